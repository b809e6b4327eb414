"""The gateway: the public RagGatewayService and the resilience layer around its upstreams."""
