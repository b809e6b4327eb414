"""`harag up` starts the trace viewer and points the mesh at it, unless told otherwise."""

from __future__ import annotations

from harag_cli.traces import start_viewer_for_mesh


async def test_up_starts_viewer_and_exports_to_it() -> None:
    viewer, env = await start_viewer_for_mesh(True, {}, otlp_port=0, api_port=0)
    assert viewer is not None
    try:
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == viewer.otlp_endpoint
        assert viewer.otlp_endpoint.startswith("http://127.0.0.1:")
        assert env["OTEL_BSP_SCHEDULE_DELAY"] == "500"
    finally:
        await viewer.stop()
    viewer, env = await start_viewer_for_mesh(
        True, {"OTEL_BSP_SCHEDULE_DELAY": "2000"}, otlp_port=0, api_port=0
    )
    assert viewer is not None
    await viewer.stop()
    assert "OTEL_BSP_SCHEDULE_DELAY" not in env  # the operator's choice stays


async def test_up_leaves_tracing_alone_when_disabled_or_exporting_elsewhere() -> None:
    assert await start_viewer_for_mesh(False, {}, otlp_port=0, api_port=0) == (None, {})
    elsewhere = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4317"}
    assert await start_viewer_for_mesh(True, elsewhere, otlp_port=0, api_port=0) == (None, {})
