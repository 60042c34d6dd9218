#!/usr/bin/env python3
"""A server that misbehaves on purpose, for the command line's tests (loopback only).

usage: misbehaving-server.py MODE PORT_FILE
  trickle-sized    answers 200 with Content-Length 1000, then one byte every half second
  trickle-chunked  the same, chunked
  retry-after      answers every request 429 with Retry-After: 100000
Writes the port it listens on (127.0.0.1, a free one) to PORT_FILE; stops after 60 s.
"""
import http.server
import sys
import threading
import time

mode, port_file = sys.argv[1], sys.argv[2]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        if mode == "retry-after":
            body = b'{"message":"Too many requests","code":429}'
            self.send_response(429)
            self.send_header("Retry-After", "100000")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if mode == "trickle-sized":
            self.send_header("Content-Length", "1000")
        else:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for _ in range(240):
                self.wfile.write(b"1\r\n \r\n" if mode == "trickle-chunked" else b" ")
                self.wfile.flush()
                time.sleep(0.5)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_POST = do_GET


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os
os.rename(port_file + ".tmp", port_file)
threading.Timer(60, server.shutdown).start()
server.serve_forever()
