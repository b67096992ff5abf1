"""`farm serve`: the local store as an OCI registry at http://HOST:PORT/v2/."""

from __future__ import annotations

import ipaddress

import click


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=int,
    help="API processes (they share upload sessions: in $FARM_HOME/uploads, or the S3 bucket).",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
def serve(host: str, port: int, workers: int, log_level: str) -> None:
    """Serve the local store as an OCI registry (pull and push with skopeo, docker,
    podman, crane...). Without FARM_API_TOKENS, only on a loopback address."""
    import uvicorn

    from api.registry.auth import parse_api_tokens
    from workers.settings import get_settings

    settings = get_settings()
    tokens = parse_api_tokens(settings.api_tokens)
    if not tokens and not is_loopback(host):
        raise click.UsageError(
            f"refusing to serve on {host}: without FARM_API_TOKENS anyone who can reach it "
            "could push and delete images. Set FARM_API_TOKENS (see `farm serve --help`), "
            "or listen on 127.0.0.1."
        )
    auth = "tokens required" if tokens else "no authentication (loopback only)"
    click.echo(f"Serving {settings.storage_url} at http://{host}:{port}/v2/ ({auth})", err=True)
    if workers > 1:
        uvicorn.run(
            "api.app:create_app", factory=True, host=host, port=port,
            workers=workers, log_level=log_level,
        )  # fmt: skip
    else:
        from api.app import create_app

        uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)
