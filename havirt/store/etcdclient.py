"""The requests havirt makes of etcd, through etcd's JSON gateway (etcd3gw).

One `Etcd` talks to the members given in config.yaml's store.endpoints: a
request goes to the member that answered last, and on to the next one when
a member refuses the connection or does not answer in time. A member cut off
from the majority does not answer (etcd keeps the request until a leader can
serve it), so "no member answered" covers both an unreachable cluster and
one without quorum: StoreUnavailable (exit 6), one line naming every member
and what it did. A request that was not answered changed nothing or changed
all it asked (each is one etcd request, and every write one transaction); a
write that a member may have got is not sent to another (see Etcd.call).

etcd3gw (and requests under it) is imported here, when the first request is
made, so that a home of files never loads it.
"""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

from havirt.errors import HavirtError, StoreRefused, StoreUnavailable

CONNECT_TIMEOUT = 2.0       # seconds to open a connection to one member
ANSWER_TIMEOUT = 5.0        # seconds one member may take to answer (an election takes ~1 s)
WRITES = ("kv/txn", "kv/put", "kv/deleterange")    # sent to one member at most (see Etcd.call)


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: str) -> str:
    """The range_end that makes a range request cover every key under `prefix`."""
    raw = prefix.encode()
    return b64(raw[:-1] + bytes([raw[-1] + 1]))


class Etcd:
    def __init__(self, cfg):
        self.cfg = cfg
        self.endpoints = list(cfg.endpoints)
        self._clients: dict = {}
        self.answered: str | None = None       # the member that answered last
        self.connect_timeout, self.answer_timeout = CONNECT_TIMEOUT, ANSWER_TIMEOUT

    def _client(self, url: str):
        client = self._clients.get(url)
        if client is None:
            from etcd3gw.client import Etcd3Client
            parts = urlsplit(url)
            client = Etcd3Client(host=parts.hostname, port=parts.port, protocol=parts.scheme,
                                 ca_cert=self.cfg.ca, cert_key=self.cfg.key, cert_cert=self.cfg.cert,
                                 timeout=(self.connect_timeout, self.answer_timeout), api_path="/v3/")
            self._clients[url] = client
        return client

    def call(self, path: str, body: dict) -> dict:
        """POST `body` to /v3/`path` on the first member that answers. A write
        (WRITES) goes on to the next member only when the last one never got it
        (no connection): one it may have done is not sent again, as etcd's own
        client does (at most once); StoreUnavailable then says so."""
        order = self.endpoints
        if self.answered in order:
            i = order.index(self.answered)
            order = order[i:] + order[:i]
        said = []
        for url in order:
            result, why, got = self._post(url, path, body)
            if why is None:
                self.answered = url
                return result
            said.append(f"{url}: {why}")
            if got and path in WRITES:
                raise StoreUnavailable("etcd did not confirm a write: " + "; ".join(said)
                                       + "; etcd may have done it or not (it was not sent again)")
        raise StoreUnavailable("etcd did not answer (unreachable, or without quorum): " + "; ".join(said)
                               + "; nothing was changed")

    def _post(self, url: str, path: str, body: dict) -> tuple[dict | None, str | None, bool]:
        """(etcd's answer, None, True), or (None, what went wrong, whether the
        member may have got the request); raises StoreRefused when etcd refused it."""
        from etcd3gw import exceptions as ex
        from requests.exceptions import RequestException
        client = self._client(url)
        try:
            result = client.post(client.get_url(path), json=body)
        except ex.Etcd3Exception as e:
            if isinstance(e, (ex.ConnectionTimeoutError, ex.ConnectionFailedError)):
                return None, *self._unanswered(e)
            detail = _detail(e)
            if detail is None:         # not etcd's answer (a proxy, another service)
                return None, f"answered {str(e.args[0] if e.args else '') or 'an error'} (not etcd?)", True
            raise StoreRefused(f"etcd at {url} refused a request: {detail}") from None
        except RequestException:       # the connection broke while the answer came
            return None, "its answer was cut short", True
        except ValueError:             # an answer, but not JSON
            return None, "answered something that is not etcd's JSON (not etcd?)", True
        if not isinstance(result, dict):
            return None, "answered something that is not etcd's JSON (not etcd?)", True
        return result, None, True

    def _unanswered(self, e) -> tuple[str, bool]:
        """What a member that did not answer did, and whether it may have got the request."""
        from requests.exceptions import ConnectTimeout, ReadTimeout, SSLError
        from urllib3.exceptions import ConnectTimeoutError
        cause = e.__context__
        if isinstance(cause, ConnectTimeout):
            return f"no connection within {self.connect_timeout:g} s", False
        if isinstance(cause, ReadTimeout):
            return f"no answer within {self.answer_timeout:g} s", True
        if cause is None:               # etcd's own answer: 503 (no leader, timed out), 504, 408
            return _detail(e) or "no answer", True
        reason = getattr(cause.args[0] if cause.args else None, "reason", None)
        if isinstance(cause, SSLError) or isinstance(reason, ConnectTimeoutError):
            return _why(e), False       # refused, no route, no such name, TLS: nothing was sent
        return "closed the connection without an answer", True

    # -- the requests ------------------------------------------------------------------
    def range(self, key: str, prefix: bool = False, **opts) -> tuple[list[dict], int]:
        """The key (or every key under it) as [{key, value, mod_revision, ...}] with
        key and value decoded to bytes, and the store's revision."""
        body = {"key": b64(key), **opts}
        if prefix:
            body["range_end"] = prefix_end(key)
        r = self.call("kv/range", body)
        kvs = [{**kv, "key": unb64(kv["key"]), "value": unb64(kv.get("value"))} for kv in r.get("kvs", [])]
        return kvs, int(r.get("header", {}).get("revision", 0))

    def txn(self, compare: list[dict], success: list[dict], failure=()) -> dict:
        return self.call("kv/txn", {"compare": compare, "success": success, "failure": list(failure)})

    def grant(self, ttl: int) -> int:
        return int(self.call("lease/grant", {"TTL": ttl, "ID": 0})["ID"])

    def keepalive(self, lease: int) -> int:
        """The lease's new TTL; 0 when it has run out (or was revoked)."""
        r = self.call("lease/keepalive", {"ID": lease})
        return int(r.get("result", {}).get("TTL", 0))

    def revoke(self, lease: int) -> None:
        try:
            self.call("lease/revoke", {"ID": lease})
        except HavirtError:      # gone already, or etcd down: it runs out by itself
            pass


# -- the pieces of a transaction ---------------------------------------------------------

def put(key: str, value: bytes | str, lease: int | None = None) -> dict:
    req = {"key": b64(key), "value": b64(value)}
    if lease:
        req["lease"] = lease
    return {"request_put": req}


def delete(key: str) -> dict:
    return {"request_delete_range": {"key": b64(key)}}


def get(key: str) -> dict:
    return {"request_range": {"key": b64(key)}}


def absent(key: str) -> dict:
    """Compare: the key does not exist."""
    return {"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": 0}


def unchanged(key: str, mod_revision: int) -> dict:
    """Compare: the key was last written at `mod_revision` (0: it does not exist)."""
    return {"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": mod_revision}


def holds(key: str, value: bytes) -> dict:
    return {"key": b64(key), "target": "VALUE", "result": "EQUAL", "value": b64(value)}


def leased(key: str, lease: int) -> dict:
    """Compare: the key is attached to `lease` (the lock is still ours)."""
    return {"key": b64(key), "target": "LEASE", "result": "EQUAL", "lease": lease}


def ranged(result: dict, i: int = 0) -> list[dict]:
    """The kvs of the i-th request_range of a transaction's answer, decoded."""
    rs = [r["response_range"] for r in result.get("responses", []) if "response_range" in r]
    kvs = rs[i].get("kvs", []) if i < len(rs) else []
    return [{**kv, "key": unb64(kv["key"]), "value": unb64(kv.get("value"))} for kv in kvs]


def _why(e) -> str:
    text = f"{e.detail_text or ''} {e.__context__ or ''}"
    for words in ("Connection refused", "No route to host", "Network is unreachable",
                  "Name or service not known", "certificate verify failed"):
        if words in text:
            return words.lower()
    return "cannot connect"


def _detail(e) -> str | None:
    """etcd's own error message (its gateway answers JSON), or None."""
    import json
    try:
        doc = json.loads(e.detail_text)
        return str(doc.get("message") or doc.get("error"))[:200] if doc.get("message") or doc.get("error") \
            else None
    except (ValueError, AttributeError, TypeError):
        return None
