"""The control API for tests and demos (``/_sandbox/*``, superuser only), and the root endpoints."""

from __future__ import annotations

from typing import Any

from rotator.durations import DurationError, parse_duration
from rotator.sandbox.errors import EsError
from rotator.sandbox.faults import FaultInjector, parse_rules
from rotator.sandbox.http import Call, Response, Router

CLUSTER_UUID = "c0ffee00rotatorsandbx"


def _require_superuser(call: Call) -> None:
    principal = call.principal
    if (
        principal is None
        or principal.authentication_type == "api_key"
        or "superuser" not in principal.roles
    ):
        name = principal.username if principal is not None else "anonymous"
        raise EsError(
            403,
            "security_exception",
            f"action [cluster:admin/sandbox/control] is unauthorized for user [{name}]: "
            "the sandbox control API is for superusers",
        )


def register_control(router: Router, faults: FaultInjector) -> None:
    """Register ``/_sandbox/reset``, ``/_sandbox/clock``, ``/_sandbox/faults`` and stats."""

    def reset(call: Call) -> Response:
        _require_superuser(call)
        call.state.reset()
        return Response(body={"acknowledged": True})

    def get_clock(call: Call) -> Response:
        _require_superuser(call)
        return Response(body={"now": call.state.clock.now_ms()})

    def set_clock(call: Call) -> Response:
        _require_superuser(call)
        body = call.request.json_object(required=True)
        _set_clock(call, body)
        return Response(body={"now": call.state.clock.now_ms()})

    def add_faults(call: Call) -> Response:
        _require_superuser(call)
        rules = parse_rules(call.request.json(required=True))
        faults.add(rules)
        return Response(body={"acknowledged": True, "rules": faults.rules()})

    def list_faults(call: Call) -> Response:
        _require_superuser(call)
        return Response(body={"rules": faults.rules()})

    def clear_faults(call: Call) -> Response:
        _require_superuser(call)
        faults.clear()
        return Response(body={"acknowledged": True})

    def get_stats(call: Call) -> Response:
        _require_superuser(call)
        return Response(body=_stats(call))

    def clear_stats(call: Call) -> Response:
        _require_superuser(call)
        call.state.stats.clear()
        return Response(body={"acknowledged": True})

    router.add("POST", "/_sandbox/reset", reset)
    router.add("GET", "/_sandbox/clock", get_clock)
    router.add("POST", "/_sandbox/clock", set_clock)
    router.add("POST", "/_sandbox/faults", add_faults)
    router.add("GET", "/_sandbox/faults", list_faults)
    router.add("DELETE", "/_sandbox/faults", clear_faults)
    router.add("GET", "/_sandbox/stats", get_stats)
    router.add("DELETE", "/_sandbox/stats", clear_stats)


def _set_clock(call: Call, body: dict[str, Any]) -> None:
    unknown = sorted(set(body) - {"now", "advance"})
    if unknown or len(body) != 1:
        raise EsError(
            400,
            "illegal_argument_exception",
            'expected exactly one of {"now": epoch_ms} or {"advance": "10d"}',
        )
    if "now" in body:
        now = body["now"]
        if isinstance(now, bool) or not isinstance(now, int) or now < 0:
            raise EsError(400, "illegal_argument_exception", "[now] must be epoch milliseconds")
        call.state.clock.set(now)
        return
    advance = body["advance"]
    if not isinstance(advance, str):
        raise EsError(
            400, "illegal_argument_exception", '[advance] must be a duration such as "10d"'
        )
    try:
        delta = parse_duration(advance)
    except DurationError as exc:
        raise EsError(400, "illegal_argument_exception", f"[advance]: {exc}") from None
    call.state.clock.advance(delta)


def _stats(call: Call) -> dict[str, Any]:
    rows = [
        {"method": method, "route": route, "status": status, "count": count}
        for (method, route, status), count in sorted(call.state.stats.items())
    ]
    return {"total": sum(r["count"] for r in rows), "requests": rows}


def register_root(router: Router) -> None:
    """Register ``GET /`` and ``GET /_cluster/health``."""

    def root(call: Call) -> Response:
        _authorize(call, "cluster:monitor/main")
        return Response(body=_info(call))

    def health(call: Call) -> Response:
        _authorize(call, "cluster:monitor/health")
        return Response(body=_health(call))

    def get_settings(call: Call) -> Response:
        _authorize(call, "cluster:monitor/settings")
        return Response(body=_settings(call))

    def put_settings(call: Call) -> Response:
        _authorize(call, "cluster:admin/settings/update")
        body = call.request.json_object(required=True)
        for scope in ("persistent", "transient"):
            for name, value in _flat(body.get(scope) or {}).items():
                if name != RETENTION_SETTING:
                    raise EsError(
                        400,
                        "illegal_argument_exception",
                        f"{scope} setting [{name}], not recognized by the sandbox",
                    )
                call.state.security.set_retention_period(str(value))
        return Response(body={"acknowledged": True, **_settings(call)})

    router.add("GET", "/", root)
    router.add("GET", "/_cluster/health", health)
    router.add("GET", "/_cluster/health/{index}", health)
    router.add("GET", "/_cluster/settings", get_settings)
    router.add("PUT", "/_cluster/settings", put_settings)


RETENTION_SETTING = "xpack.security.authc.api_key.delete.retention_period"


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = value
    return out


def _settings(call: Call) -> dict[str, Any]:
    retention_ms = call.state.security.retention_ms
    days, rest = divmod(retention_ms, 86_400_000)
    value = f"{days}d" if not rest else f"{retention_ms}ms"
    return {"persistent": {RETENTION_SETTING: value}, "transient": {}}


def _authorize(call: Call, action: str) -> None:
    from rotator.sandbox.authn import authorize_cluster

    authorize_cluster(call, action)


def _info(call: Call) -> dict[str, Any]:
    version = call.state.version
    return {
        "name": "sandbox-node-0",
        "cluster_name": call.state.cluster_name,
        "cluster_uuid": CLUSTER_UUID,
        "version": {
            "number": version,
            "build_flavor": "default",
            "build_type": "sandbox",
            "build_hash": "0" * 40,
            "build_date": "2025-01-01T00:00:00.000000000Z",
            "build_snapshot": False,
            "lucene_version": "9.12.0" if call.state.major == 8 else "10.1.0",
            "minimum_wire_compatibility_version": "7.17.0" if call.state.major == 8 else "8.18.0",
            "minimum_index_compatibility_version": "7.0.0" if call.state.major == 8 else "8.0.0",
        },
        "tagline": "You Know, for Search",
    }


def _health(call: Call) -> dict[str, Any]:
    return {
        "cluster_name": call.state.cluster_name,
        "status": "green",
        "timed_out": False,
        "number_of_nodes": 1,
        "number_of_data_nodes": 1,
        "active_primary_shards": len(call.state.docs.indices),
        "active_shards": len(call.state.docs.indices),
        "relocating_shards": 0,
        "initializing_shards": 0,
        "unassigned_shards": 0,
        "unassigned_primary_shards": 0,
        "delayed_unassigned_shards": 0,
        "number_of_pending_tasks": 0,
        "number_of_in_flight_fetch": 0,
        "task_max_waiting_in_queue_millis": 0,
        "active_shards_percent_as_number": 100.0,
    }
