"""A flow's diagram from the real wiring: HTTP routes, cron schedules and state groups that
trigger steps, the topics steps enqueue to and their subscribers (in any flow), conditions on
the edges, and each step's dead-letter topic with its handler steps; laid out in columns by depth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..declare.steps import Step
from ..runtime import Runtime

#: The flow of steps that name none.
NO_FLOW = "unassigned"

NODE_WIDTH = 200
NODE_HEIGHT = 56
COLUMN_GAP = 80
ROW_GAP = 24
MARGIN = 20
LABEL_LIMIT = 30


@dataclass
class Node:
    """A box: ``kind`` is ``http``, ``cron``, ``state``, ``step``, ``topic`` or ``dead-letter``."""

    id: str
    kind: str
    label: str
    detail: str = ""
    step: str | None = None
    #: A step of another flow that this one reaches.
    foreign: bool = False
    x: float = 0
    y: float = 0

    @property
    def short(self) -> str:
        return self.label if len(self.label) <= LABEL_LIMIT else self.label[: LABEL_LIMIT - 1] + "…"

    @property
    def short_detail(self) -> str:
        return self.detail if len(self.detail) <= LABEL_LIMIT + 4 else self.detail[: LABEL_LIMIT + 3] + "…"


@dataclass
class Edge:
    """An arrow; ``kind`` is ``flow``, ``condition`` (the trigger has a condition) or ``dead`` (dead letters)."""

    source: str
    target: str
    kind: str = "flow"
    label: str = ""
    path: str = ""
    label_x: float = 0
    label_y: float = 0


@dataclass
class Diagram:
    flow: str
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    width: float = 0
    height: float = 0

    def steps(self) -> list[str]:
        return [n.step for n in self.nodes if n.step is not None]


def flow_names(runtime: Runtime) -> list[str]:
    """Every flow a step names, and :data:`NO_FLOW` if some step names none."""
    names = {flow for step in runtime.registry for flow in step.flows}
    if any(not step.flows for step in runtime.registry):
        names.add(NO_FLOW)
    return sorted(names)


def steps_of(runtime: Runtime, flow: str) -> list[Step]:
    return [s for s in runtime.registry if (flow in s.flows) or (flow == NO_FLOW and not s.flows)]


def build_diagram(runtime: Runtime, flow: str) -> Diagram | None:
    """The diagram of ``flow``, laid out; ``None`` if no step belongs to it."""
    members = steps_of(runtime, flow)
    if not members:
        return None
    diagram = Diagram(flow)
    nodes: dict[str, Node] = {}
    edges: dict[tuple[str, str], Edge] = {}
    names = {s.name for s in members}
    subscribers = runtime.registry.subscribers()
    cron = {step.name: expression for step, expression in runtime.cron_steps()}

    def node(id: str, kind: str, label: str, detail: str = "", step: str | None = None) -> str:
        if id not in nodes:
            nodes[id] = Node(id, kind, label, detail, step, foreign=step is not None and step not in names)
        elif kind == "dead-letter":
            nodes[id].kind = kind
        return id

    def edge(source: str, target: str, kind: str = "flow", label: str = "") -> None:
        edges.setdefault((source, target), Edge(source, target, kind, label))

    def step_node(step: Step) -> str:
        return node(f"step:{step.name}", "step", step.name, "", step.name)

    def to_subscribers(topic_id: str, topic: str) -> None:
        for listener in subscribers.get(topic, []):
            trigger = listener.queue_trigger_for(topic)
            condition = trigger.condition if trigger else None
            if condition is not None:
                edge(topic_id, step_node(listener), "condition", "if " + _name(condition))
            else:
                edge(topic_id, step_node(listener))

    for step in members:
        target = step_node(step)
        for http in step.http_triggers:
            edge(node(f"http:{http.method} {http.path}", "http", f"{http.method} {http.path}"), target)
        for _ in step.cron_triggers:
            edge(node(f"cron:{step.name}", "cron", "cron", cron.get(step.name, "")), target)
        for trigger in step.state_triggers:
            source = node(f"state:{trigger.group}", "state", f"state {trigger.group}")
            marks = [f"{k}={v!r}" for k, v in {**trigger.filter, **trigger.becomes}.items()]
            if trigger.condition is not None:
                marks.append("if " + _name(trigger.condition))
            edge(source, target, "condition" if marks else "flow", ", ".join(marks))
        for topic_trigger in step.queue_triggers:
            to_subscribers(node(f"topic:{topic_trigger.topic}", "topic", topic_trigger.topic), topic_trigger.topic)
        for topic in step.enqueues:
            topic_id = node(f"topic:{topic}", "topic", topic)
            edge(target, topic_id)
            to_subscribers(topic_id, topic)
        settings = runtime.settings.get(step.name)
        if settings is not None and settings.dead_letter_queue:
            topic = settings.dead_letter_queue
            topic_id = node(f"topic:{topic}", "dead-letter", topic, "dead letters")
            edge(target, topic_id, "dead", "dead letters")
            to_subscribers(topic_id, topic)
    diagram.nodes = list(nodes.values())
    diagram.edges = list(edges.values())
    _lay_out(diagram)
    return diagram


def _name(condition: Any) -> str:
    return str(getattr(condition, "__name__", None) or "condition").replace("<lambda>", "condition")


def _depths(diagram: Diagram) -> dict[str, int]:
    """Each node's column: the longest path to it from a source, cycles broken where they close."""
    incoming: dict[str, set[str]] = {n.id: set() for n in diagram.nodes}
    for e in diagram.edges:
        if e.source != e.target:
            incoming[e.target].add(e.source)
    depth: dict[str, int] = {}
    remaining = [n.id for n in diagram.nodes]
    while remaining:
        ready = [n for n in remaining if not (incoming[n] - depth.keys())]
        if not ready:  # a cycle: take the node fewest unplaced arrows lead into
            ready = [min(remaining, key=lambda n: len(incoming[n] - depth.keys()))]
        for n in ready:
            depth[n] = max((depth[p] + 1 for p in incoming[n] if p in depth), default=0)
            remaining.remove(n)
    return depth


def _lay_out(diagram: Diagram) -> None:
    depth = _depths(diagram)
    columns: dict[int, list[Node]] = {}
    for n in diagram.nodes:
        columns.setdefault(depth[n.id], []).append(n)
    placed: dict[str, Node] = {}
    parents: dict[str, list[str]] = {}
    for e in diagram.edges:
        parents.setdefault(e.target, []).append(e.source)
    for column in sorted(columns):
        members = columns[column]

        def barycentre(n: Node) -> float:
            ys = [placed[p].y for p in parents.get(n.id, []) if p in placed]
            return sum(ys) / len(ys) if ys else 0.0

        members.sort(key=barycentre)  # next to the boxes that lead to it: fewer crossings
        for row, n in enumerate(members):
            n.x = MARGIN + column * (NODE_WIDTH + COLUMN_GAP)
            n.y = MARGIN + row * (NODE_HEIGHT + ROW_GAP)
            placed[n.id] = n
    diagram.width = MARGIN * 2 + (max(columns, default=0) + 1) * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP
    tallest = max((len(c) for c in columns.values()), default=1)
    diagram.height = MARGIN * 2 + tallest * (NODE_HEIGHT + ROW_GAP) - ROW_GAP
    for e in diagram.edges:
        a, b = placed[e.source], placed[e.target]
        x1, y1 = a.x + NODE_WIDTH, a.y + NODE_HEIGHT / 2
        x2, y2 = b.x, b.y + NODE_HEIGHT / 2
        if x2 > x1:
            bend = (x2 - x1) / 2
            e.path = f"M{x1:.0f},{y1:.0f} C{x1 + bend:.0f},{y1:.0f} {x2 - bend:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
        else:  # an arrow back to an earlier column: round below both boxes
            low = max(a.y, b.y) + NODE_HEIGHT + ROW_GAP / 2
            e.path = f"M{x1:.0f},{y1:.0f} C{x1 + 60:.0f},{low:.0f} {x2 - 60:.0f},{low:.0f} {x2:.0f},{y2:.0f}"
            diagram.height = max(diagram.height, low + MARGIN)
        e.label_x, e.label_y = (x1 + x2) / 2, (y1 + y2) / 2 - 6
