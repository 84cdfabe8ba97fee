"""A KTAP version 1 reader for vmfault's serial logs: a top-level plan of
suites, each suite a two-space-indented subtest with its own plan and
`ok N name` / `not ok N name` lines, `# SKIP` directives and `#` diagnostic
lines.  Anything else in the log (boot messages, oops reports) is kept as
context for the case that was running."""
import re
from dataclasses import dataclass, field

CASE = re.compile(r"^  (ok|not ok) (\d+) (\S+)(?: # SKIP ?(.*))?$")
SUITE = re.compile(r"^(ok|not ok) (\d+) (\S+)(?: # SKIP ?(.*))?$")
SUBTEST = re.compile(r"^  # Subtest: (\S+)$")
PLAN = re.compile(r"^(  )?1\.\.(\d+)$")


@dataclass
class Case:
    suite: str
    name: str
    outcome: str  # ok, not ok, skip
    diagnostics: list = field(default_factory=list)


@dataclass
class Report:
    version_seen: bool = False
    plan: int = None
    suites_done: int = 0
    totals_seen: bool = False
    cases: list = field(default_factory=list)
    open_suite: str = None
    open_plan: int = None
    open_count: int = 0
    context: list = field(default_factory=list)

    @property
    def failed(self):
        return sum(1 for c in self.cases if c.outcome == "not ok")

    def problems(self):
        p = []
        if not self.version_seen:
            p.append("no 'KTAP version 1' line: the kernel never reached the test harness")
        elif self.plan is None:
            p.append("no KTAP plan line")
        elif self.suites_done != self.plan:
            where = f" inside suite {self.open_suite} after case {self.open_count}" if self.open_suite else ""
            tail = "\n".join(self.context[-15:])
            p.append(f"KTAP plan 1..{self.plan} but {self.suites_done} suites finished{where}; "
                     f"last output:\n{tail}")
        elif not self.totals_seen:
            p.append("no '# Totals' line")
        return p


def parse(text):
    r = Report()
    for line in text.splitlines():
        if line == "KTAP version 1":
            r.version_seen = True
            continue
        m = PLAN.match(line)
        if m:
            if m.group(1):
                r.open_plan = int(m.group(2))
            elif r.plan is None:
                r.plan = int(m.group(2))
            continue
        m = SUBTEST.match(line)
        if m:
            r.open_suite, r.open_count, r.context = m.group(1), 0, []
            continue
        m = CASE.match(line)
        if m and r.open_suite:
            outcome = "skip" if m.group(4) is not None else m.group(1)
            diags = [l.strip()[2:] for l in r.context if l.strip().startswith("# ")]
            if m.group(4):
                diags.append(m.group(4))
            if outcome == "not ok" and not diags:
                diags = r.context[-15:]
            r.cases.append(Case(r.open_suite, m.group(3), outcome, diags))
            r.open_count += 1
            r.context = []
            continue
        m = SUITE.match(line)
        if m and r.open_suite == m.group(3):
            r.suites_done += 1
            r.open_suite = None
            continue
        if line.startswith("# Totals:"):
            r.totals_seen = True
            continue
        r.context.append(line)
    return r
