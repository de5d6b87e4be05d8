"""What the tests' small OpenAI-compatible endpoints share: a JSON reply."""
import json


def send_json(handler, code: int, payload: dict) -> None:
    """Writes ``payload`` as the JSON body of an HTTP response with status ``code``."""
    data = json.dumps(payload).encode()
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
