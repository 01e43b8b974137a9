"""A QUIC server or client for the lab tests (aioquic): the client
connects with a server name and ALPN list, waits for the handshake and
closes. Only lab addresses are used; every run is bounded by the caller's
timeout."""

import argparse
import asyncio
import ssl

from aioquic.asyncio import connect, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.packet import QuicProtocolVersion

VERSIONS = {"1": QuicProtocolVersion.VERSION_1, "2": QuicProtocolVersion.VERSION_2}


async def run_server(args):
    config = QuicConfiguration(is_client=False, alpn_protocols=args.alpn.split(","))
    config.supported_versions = [VERSIONS["2"], VERSIONS["1"]]
    config.load_cert_chain(args.cert, args.key)
    await serve(args.host, args.port, configuration=config)
    await asyncio.Future()


async def run_client(args):
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=args.alpn.split(","),
        server_name=args.server_name,
        verify_mode=ssl.CERT_NONE,
    )
    config.original_version = VERSIONS[args.version]
    config.supported_versions = [VERSIONS[args.version]]
    async with connect(args.host, args.port, configuration=config) as client:
        await client.ping()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["server", "client"])
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--alpn", default="h3")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--server-name")
    p.add_argument("--version", choices=["1", "2"], default="1")
    args = p.parse_args()
    asyncio.run(run_server(args) if args.mode == "server" else run_client(args))


if __name__ == "__main__":
    main()
