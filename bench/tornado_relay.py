"""The anchor of the peer table: a bare Tornado + ``tornado.curl_httpclient`` relay, nothing else.

What Tornado's own HTTP server and curl client cost per request on this
machine, measured in the same run as the gateway: the issue's "a bare Tornado
+ curl relay does about 3,650 req/s at 275 µs here" is this program. It
forwards ``POST /n/<node>/v1/chat/completions`` to the mock at the same path
(one shared ``CurlAsyncHTTPClient``, keep-alive), returns the body, and relays
a stream chunk by chunk (``streaming_callback`` writing and flushing each
chunk). No auth, no ledger, no routing, no validation: a floor for a Tornado
design, not a gateway.

    python bench/tornado_relay.py --port 8090 --upstream http://127.0.0.1:9000
"""

from __future__ import annotations

import argparse
import asyncio

from tornado.curl_httpclient import CurlAsyncHTTPClient
from tornado.web import Application, RequestHandler

HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-up"}


class Relay(RequestHandler):
    def initialize(self, client: CurlAsyncHTTPClient, upstream: str) -> None:
        self.client = client
        self.upstream = upstream

    async def post(self) -> None:
        streamed = b'"stream": true' in self.request.body or b'"stream":true' in self.request.body

        def chunk(data: bytes) -> None:
            self.write(data)
            self.flush()

        response = await self.client.fetch(self.upstream + self.request.path, method="POST", body=self.request.body,
                                           headers=HEADERS, raise_error=False,
                                           streaming_callback=chunk if streamed else None,
                                           header_callback=self._header if streamed else None)
        if not streamed:
            self.set_header("Content-Type", "application/json")
            self.write(response.body)

    def _header(self, line: str) -> None:
        if line.lower().startswith("content-type:"):
            self.set_header("Content-Type", line.split(":", 1)[1].strip())


class Health(RequestHandler):
    def get(self) -> None:
        self.write("ok")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the mock's base URL")
    args = parser.parse_args()
    client = CurlAsyncHTTPClient(force_instance=True, max_clients=256)
    app = Application([(r"/n/.*", Relay, {"client": client, "upstream": args.upstream}), ("/healthz", Health)])
    app.listen(args.port, "127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
