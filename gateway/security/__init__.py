"""The gateway's security: who is calling (API keys and scopes), how much they may call
(rate limits), and the TLS the gateway serves and dials with."""
