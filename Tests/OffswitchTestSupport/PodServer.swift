/// A one-page HTTP server for tests of shared networks (`network: sandbox:ID`), run with
/// `python3 -c`: it answers every GET with `body`. The command returns once the server listens
/// (the parent exits after `listen`, the served child lives on detached), so nothing has to wait
/// and retry for the port.
public func podServerScript(port: Int, body: String) -> String {
    """
    import http.server, os
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            data = \(String(reflecting: body)).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        def log_message(self, *args):
            pass
    server = http.server.HTTPServer(("127.0.0.1", \(port)), Page)
    if os.fork():
        os._exit(0)
    os.setsid()
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    server.serve_forever()
    """
}

/// Python that connects to each `host:port` given as an argument and prints `connected` or the
/// errno's name (ENETUNREACH, ECONNREFUSED) for each, one a line.
public let connectScript = """
    import errno, socket, sys
    for target in sys.argv[1:]:
        host, port = target.rsplit(":", 1)
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        s.settimeout(5)
        try:
            s.connect((host, int(port)))
            print("connected")
        except OSError as e:
            print(errno.errorcode.get(e.errno, str(e)))
    """
