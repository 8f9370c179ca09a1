"""The peers benchmark's report (pure): summaries per stack and scenario, targets, every round."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.floor import FLOOR_PARTS
from bench.nginx_step import NginxStepTiming
from bench.rounds import RoundResult
from bench.stats import markdown_table, median, milliseconds, percentile, ratio, seconds, spread

DEPLOYER_STEPS = ("queued", "resolve", "pull", "start", "healthy", "nginx", "drain", "retire")
# The targets for deployer (issue 11, "Speed by default").
SERVED_TARGET = 1.3  # x the floor
FINISHED_TARGET = 1.0  # seconds, idle old app
ACK_P99_TARGET = 0.005
NGINX_STEP_TARGET = 0.3


@dataclass(frozen=True)
class Summary:
    """One stack in one scenario, over its rounds."""

    stack: str
    rounds: int
    succeeded: int
    failed: list[int]
    served: float
    only_new: float
    finished: float
    ack: float  # median of the triggering webhooks' acks
    probes: list[float]  # during the deployments
    idle_probes: list[float]  # before the webhooks, under the same load
    probe_failures: int


def summarize(results: Sequence[RoundResult], stack: str, scenario: str) -> Summary:
    """Medians over one stack's rounds in one scenario."""
    mine = [item for item in results if item.stack == stack and item.scenario == scenario]
    return Summary(
        stack=stack,
        rounds=len(mine),
        succeeded=sum(item.state == "succeeded" for item in mine),
        failed=[item.failed for item in mine],
        served=median([item.served for item in mine]),
        only_new=median([item.only_new for item in mine]),
        finished=median([item.finished for item in mine]),
        ack=median([item.ack for item in mine]),
        probes=[latency for item in mine for latency in item.probes],
        idle_probes=[latency for item in mine for latency in item.idle_probes],
        probe_failures=sum(item.probe_failures for item in mine),
    )


def ack_cell(latencies: Sequence[float], failures: int = 0) -> str:
    """`p99 (count)` of ack latencies, with failed probes when there were any."""
    if not latencies and not failures:
        return "-"
    failed = f", {failures} failed" if failures else ""
    return f"{milliseconds(percentile(latencies, 0.99))} ({len(latencies)}{failed})"


def ordered(values: Sequence[str]) -> list[str]:
    """The distinct values in first-seen order."""
    return list(dict.fromkeys(values))


def summary_table(results: Sequence[RoundResult], scenario: str) -> list[str]:
    """Per stack: failures, times and their ratio to the floor, acks."""
    stacks = ordered([item.stack for item in results])
    floor = summarize(results, "floor", scenario)
    head = [
        "stack",
        "succeeded",
        "failed requests per deploy",
        "webhook->served",
        "x floor",
        "only new from",
        "webhook->finished",
        "x floor",
        "trigger ack",
        "ack p50",
        "ack p99 (n)",
        "ack p99 before the webhook (n)",
    ]
    rows = []
    for stack in stacks:
        item = summarize(results, stack, scenario)
        rows.append(
            [
                stack,
                f"{item.succeeded}/{item.rounds}",
                spread(item.failed),
                seconds(item.served),
                ratio(item.served, floor.served),
                seconds(item.only_new),
                seconds(item.finished),
                ratio(item.finished, floor.finished),
                milliseconds(item.ack),
                milliseconds(percentile(item.probes, 0.5)),
                ack_cell(item.probes, item.probe_failures),
                ack_cell(item.idle_probes),
            ]
        )
    return markdown_table(head, rows)


def details_table(
    results: Sequence[RoundResult], stack: str, columns: Sequence[str], total: str | None = None
) -> list[str]:
    """Per scenario, the median of each timed part the stack reports (`total`: last column)."""
    rows = []
    for scenario in ordered([item.scenario for item in results]):
        mine = [item for item in results if item.stack == stack and item.scenario == scenario]
        cells = [seconds(median([item.details.get(name) for item in mine]), 3) for name in columns]
        if total is not None:
            cells.append(seconds(median([item.details.get(total) for item in mine]), 3))
            cells.append(seconds(median([item.served for item in mine]), 3))
        rows.append([scenario, *cells])
    extra = ["sum of parts", "end to end (served)"] if total is not None else []
    return markdown_table(["scenario", *columns, *extra], rows)


def rounds_table(results: Sequence[RoundResult]) -> list[str]:
    """Every round, in the order run."""
    head = [
        "scenario",
        "stack",
        "version",
        "state",
        "failed",
        "OK",
        "served",
        "only new",
        "finished",
        "trigger ack",
        "errors",
    ]
    rows = [
        [
            item.scenario,
            item.stack,
            item.version,
            item.state,
            str(item.failed),
            str(item.ok),
            seconds(item.served),
            seconds(item.only_new),
            seconds(item.finished),
            milliseconds(item.ack),
            ", ".join(item.errors) or "-",
        ]
        for item in results
    ]
    return markdown_table(head, rows)


def nginx_table(timings: Sequence[NginxStepTiming]) -> list[str]:
    """deployer's nginx step with many services."""
    head = ["services", "repeats", "render", "nginx -t", "reload", "whole step (median)", "max"]
    rows = [
        [
            str(item.services),
            str(item.repeats),
            seconds(item.render, 3),
            seconds(item.test, 3),
            seconds(item.reload, 3),
            seconds(item.step, 3),
            seconds(item.step_max, 3),
        ]
        for item in timings
    ]
    return markdown_table(head, rows)


def verdict(met: bool) -> str:
    return "yes" if met else "**no**"


def targets_table(
    results: Sequence[RoundResult], scenarios: Sequence[str], nginx: Sequence[NginxStepTiming]
) -> list[str]:
    """deployer against the issue's targets, measured in this run."""
    mine = [item for item in results if item.stack == "deployer"]
    failed = [item.failed for item in mine]
    rows = [
        [
            "0 failed requests in every round",
            f"failed per round: {failed}",
            verdict(bool(mine) and not any(failed)),
        ]
    ]
    for scenario in scenarios:
        served = summarize(results, "deployer", scenario).served
        floor = summarize(results, "floor", scenario).served
        rows.append(
            [
                f"webhook->served <= {SERVED_TARGET:g}x floor ({scenario})",
                f"{seconds(served)} s / {seconds(floor)} s = {ratio(served, floor)}",
                verdict(served <= SERVED_TARGET * floor),
            ]
        )
    finished = summarize(results, "deployer", scenarios[0]).finished
    rows.append(
        [
            f"webhook->finished <= {FINISHED_TARGET:g} s, idle old app ({scenarios[0]})",
            f"median {seconds(finished)} s",
            verdict(finished <= FINISHED_TARGET),
        ]
    )
    probes = [latency for item in mine for latency in item.probes]
    p99 = percentile(probes, 0.99)
    rows.append(
        [
            f"ack p99 < {ACK_P99_TARGET * 1000:g} ms during a deployment",
            f"p99 {milliseconds(p99)} over {len(probes)} webhooks",
            verdict(bool(probes) and p99 < ACK_P99_TARGET),
        ]
    )
    for item in nginx[-1:]:  # the many-services measurement
        rows.append(
            [
                f"nginx step at {item.services} services < {NGINX_STEP_TARGET:g} s (every repeat)",
                f"median {seconds(item.step, 3)} s, max {seconds(item.step_max, 3)} s",
                verdict(item.step_max < NGINX_STEP_TARGET),
            ]
        )
    return markdown_table(["target (issue 11)", "measured", "met"], rows)


def report(
    head: Sequence[str],
    results: Sequence[RoundResult],
    nginx: Sequence[NginxStepTiming],
) -> str:
    """The whole Markdown report; `head` is the title, machine and command lines."""
    scenarios = ordered([item.scenario for item in results])
    lines = [*head, "", "## deployer against the targets", ""]
    lines += targets_table(results, scenarios, nginx)
    for scenario in scenarios:
        lines += ["", f"## Scenario: {scenario}", "", *summary_table(results, scenario)]
    lines += ["", "## The floor's parts (median, seconds)", ""]
    lines += details_table(results, "floor", FLOOR_PARTS, total="floor")
    lines += ["", "## deployer's steps (median, seconds)", ""]
    lines += details_table(results, "deployer", DEPLOYER_STEPS)
    lines += ["", "## deployer's nginx step with many services (seconds)", ""]
    lines += nginx_table(nginx)
    lines += ["", "## Every round", "", *rounds_table(results)]
    return "\n".join(lines) + "\n"
