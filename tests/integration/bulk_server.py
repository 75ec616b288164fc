"""bulk_server.py: a small search engine stand-in that speaks the _bulk API with external versions.

No Elasticsearch or OpenSearch is installable here, so the tests run eddy against this: POST
/_bulk with NDJSON index and delete actions, each with "version" and "version_type":"external".
Like Elasticsearch it keeps, per (index, id), the document and its version, and a deleted
document's version (a tombstone, kept for good here; Elasticsearch drops it after
index.gc_deletes), and it refuses with 409 an action whose version is not greater than the
stored one. It records every request, and can be made to fail (HTTP 503, or closing the
connection) or to answer slowly.

    srv = BulkServer()          # listens on 127.0.0.1:<free port> in a thread
    srv.url                     # http://127.0.0.1:port
    srv.docs                    # {(index, id): (version, doc dict or None when deleted)}
    srv.mode = "503" | "close" | "ok";  srv.delay_s = 0.5
    srv.stop()
"""
import http.server
import json
import threading


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        srv = self.server.owner
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        if self.path.split("?")[0] != "/_bulk":
            self._send(404, {"error": "no such endpoint %s" % self.path, "status": 404})
            return
        if srv.delay_s:
            threading.Event().wait(srv.delay_s)
        if srv.mode == "close":
            srv.refused += 1
            self.close_connection = True
            self.connection.close()
            return
        if srv.mode == "503":
            srv.refused += 1
            self._send(503, {"error": "unavailable", "status": 503})
            return
        if self.headers.get("Content-Type") != "application/x-ndjson":
            self._send(400, {"error": "Content-Type must be application/x-ndjson", "status": 400})
            return
        lines = body.decode("utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        else:
            self._send(400, {"error": "the bulk request must end with a newline", "status": 400})
            return
        items, errors, i = [], False, 0
        with srv.lock:
            srv.requests += 1
            while i < len(lines):
                action = json.loads(lines[i])
                i += 1
                (kind, meta), = action.items()
                if kind not in ("index", "delete"):
                    raise ValueError("unexpected action %r" % kind)
                if meta.get("version_type") != "external" or not isinstance(meta.get("version"), int):
                    raise ValueError("action without an external version: %r" % meta)
                doc = None
                if kind == "index":
                    doc = json.loads(lines[i])
                    i += 1
                key = (meta["_index"], meta["_id"])
                old = srv.docs.get(key)
                srv.actions += 1
                if old is not None and old[0] >= meta["version"]:
                    status, errors = 409, True
                    item = {"_index": key[0], "_id": key[1], "status": 409,
                            "error": {"type": "version_conflict_engine_exception"}}
                    srv.conflicts += 1
                else:
                    status = 200 if old is not None and old[1] is not None else 201
                    if kind == "delete" and (old is None or old[1] is None):
                        status = 404
                    srv.docs[key] = (meta["version"], doc)
                    item = {"_index": key[0], "_id": key[1], "_version": meta["version"],
                            "status": status}
                items.append({kind: item})
        self._send(200, {"took": 1, "errors": errors, "items": items})


class BulkServer:
    def __init__(self, port=0):
        self.docs = {}
        self.lock = threading.Lock()
        self.mode = "ok"
        self.delay_s = 0
        self.requests = self.actions = self.conflicts = self.refused = 0
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def live(self, index):
        """The documents of index that exist: {id: (version, doc)}."""
        with self.lock:
            return {k[1]: v for k, v in self.docs.items() if k[0] == index and v[1] is not None}

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
