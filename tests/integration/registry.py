"""registry.py: a small Confluent schema registry for the tests, speaking its REST API.

    reg = SchemaRegistry(user="u", password="p")       # serves on 127.0.0.1:<free port>
    sid = reg.register("likes-value", schema_text)     # the id, as POST would give it
    reg.down()      # connection refused from now on (the port stays reserved for up())
    reg.up()
    reg.delay = 2.0 # every answer waits this long
    reg.requests    # [(method, path), ...] served, for cache checks

GET /schemas/ids/{id} -> {"schema": text}, 404 {"error_code": 40403} when unknown.
POST /subjects/{subject}/versions {"schema": text} -> {"id": n}; the same text under any
subject gets the same id, as in the real registry. GET /subjects lists subjects.
With user/password set, any request without that basic auth gets 401.
"""
import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import harness


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _send(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _auth_ok(self):
        reg = self.server.registry
        if reg.user is None:
            return True
        want = "Basic " + base64.b64encode(("%s:%s" % (reg.user, reg.password)).encode()).decode()
        return self.headers.get("Authorization") == want

    def _common(self, method):
        reg = self.server.registry
        with reg.lock:
            reg.requests.append((method, self.path))
        if reg.delay:
            time.sleep(reg.delay)
        if reg.status:
            self._send(reg.status, {"error_code": reg.status * 100, "message": "injected"})
            return False
        if not self._auth_ok():
            self._send(401, {"error_code": 401, "message": "Unauthorized"})
            return False
        return True

    def do_GET(self):
        if not self._common("GET"):
            return
        reg = self.server.registry
        parts = self.path.strip("/").split("/")
        if len(parts) == 3 and parts[:2] == ["schemas", "ids"] and parts[2].isdigit():
            text = reg.by_id.get(int(parts[2]))
            if text is None:
                self._send(404, {"error_code": 40403, "message": "Schema not found"})
            else:
                self._send(200, {"schema": text})
        elif parts == ["subjects"]:
            self._send(200, sorted(reg.subjects))
        else:
            self._send(404, {"error_code": 404, "message": "Not found"})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        if not self._common("POST"):
            return
        parts = self.path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions":
            try:
                text = json.loads(body)["schema"]
                json.loads(text)
            except Exception:
                self._send(422, {"error_code": 42201, "message": "Invalid schema"})
                return
            self._send(200, {"id": self.server.registry.register(parts[1], text)})
        else:
            self._send(404, {"error_code": 404, "message": "Not found"})


class SchemaRegistry:
    def __init__(self, user=None, password=None, port=None):
        self.user, self.password = user, password
        self.port = port or harness.free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.by_id, self.ids, self.subjects = {}, {}, {}
        self.requests = []
        self.lock = threading.Lock()
        self.delay = 0.0
        self.status = 0  # answer every request with this HTTP status when set
        self._srv = None
        self.up()

    def register(self, subject, text):
        with self.lock:
            key = json.dumps(json.loads(text), sort_keys=True)
            if key not in self.ids:
                self.ids[key] = len(self.ids) + 1
                self.by_id[self.ids[key]] = text
            self.subjects.setdefault(subject, []).append(self.ids[key])
            return self.ids[key]

    def up(self):
        if self._srv:
            return
        self._srv = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        self._srv.daemon_threads = True
        self._srv.registry = self
        threading.Thread(target=self._srv.serve_forever, daemon=True).start()

    def down(self):
        if self._srv:
            self._srv.shutdown()
            self._srv.server_close()
            self._srv = None

    def gets(self, sid):
        with self.lock:
            return sum(1 for m, p in self.requests if m == "GET" and p == "/schemas/ids/%d" % sid)
