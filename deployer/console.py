"""Text for the terminal: status and history tables, deployment progress (pure functions)."""

from __future__ import annotations

from typing import Any

from deployer.documents import short_digest


def short(digest: str | None) -> str:
    """`sha256:0123456789ab`, or `-`."""
    return short_digest(digest) or "-"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def table(head: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(row[index]) for row in [head, *rows]) for index in range(len(head))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [head, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def status_table(status: dict[str, Any]) -> str:
    """`deployer status`: one row per service."""
    rows = []
    for name, entry in status["services"].items():
        last = entry.get("last_deployment") or {}
        rows.append(
            [
                name,
                entry["state"],
                entry.get("health") or "-",
                entry["image"],
                short(entry.get("digest")),
                serving(entry),
                entry.get("since") or "-",
                f"{last.get('id', '-')} {last.get('state', '')}".strip(),
            ]
        )
    head = ["SERVICE", "STATE", "HEALTH", "IMAGE", "DIGEST", "CONTAINERS", "SINCE", "LAST"]
    return table(head, rows)


def serving(entry: dict[str, Any]) -> str:
    """The CONTAINERS column: the containers, or a Swarm service's tasks running/desired."""
    replicas = entry.get("replicas")
    if isinstance(replicas, dict):  # a Swarm service
        desired = replicas.get("desired")
        update = f", update {entry['update_state']}" if entry.get("update_state") else ""
        stale = f", stale since {entry.get('read_at') or '-'}" if entry.get("read_error") else ""
        running = replicas.get("running", 0)
        return f"swarm {running}/{'-' if desired is None else desired}{update}{stale}"
    return ", ".join(r["container"] for r in replicas or []) or "-"


def history_table(deployments: list[dict[str, Any]]) -> str:
    """`deployer history SERVICE`: newest first, with the first line of any error."""
    rows = [
        [
            item["id"],
            item["state"],
            short(item.get("digest")),
            item["created_at"] or "-",
            seconds(item.get("duration_seconds")),
            item["trigger"],
            (item.get("error") or "").splitlines()[0] if item.get("error") else "",
        ]
        for item in deployments
    ]
    head = ["ID", "STATE", "DIGEST", "QUEUED", "TOOK", "TRIGGER", "ERROR"]
    return table(head, rows) if rows else "no deployments yet\n"


class Progress:
    """Turns successive versions of a deployment into lines: each step once started, once done."""

    def __init__(self) -> None:
        self.printed: set[tuple[int, str]] = set()
        self.state = ""

    def lines(self, deployment: dict[str, Any]) -> list[str]:
        out = []
        if deployment["state"] != self.state and deployment["state"] in ("queued", "running"):
            out.append(
                f"deployment {deployment['id']} of {deployment['service']}: {deployment['state']}"
            )
        self.state = deployment["state"]
        for index, step in enumerate(deployment["steps"]):
            key = (index, step["state"])
            if key in self.printed:
                continue
            self.printed.add(key)
            if step["state"] == "running":
                out.append(f"  {step['name']:<8} ...")
            else:
                mark = {"succeeded": "ok", "failed": "FAILED"}.get(step["state"], step["state"])
                detail = step["detail"].splitlines()[0] if step["detail"] else ""
                out.append(
                    f"  {step['name']:<8} {mark:<6} {seconds(step.get('duration_seconds')):>7}"
                    f"  {detail}"
                )
        return out


def outcome(deployment: dict[str, Any]) -> str:
    """The final line(s) for a followed deployment."""
    text = (
        f"deployment {deployment['id']} of {deployment['service']} {deployment['state']}"
        f" in {seconds(deployment.get('duration_seconds'))}"
    )
    if deployment.get("digest"):
        text += f": {short(deployment.get('previous_digest'))} -> {short(deployment['digest'])}"
    if deployment.get("error"):
        text += f"\nerror: {deployment['error']}"
    if deployment.get("logs"):
        text += f"\nlast log lines of the container:\n{deployment['logs']}"
    return text + "\n"
