#!/usr/bin/env python3
"""Counts test results from the files the test runners wrote, and nothing else.

    tests/lib/results.py MANIFEST

MANIFEST has one line per result file, tab-separated:

    STAGE <TAB> EXIT-STATUS <TAB> FORMAT <TAB> PATH

FORMAT is trx (dotnet test --logger trx), junit (ctest --output-junit) or
tap (TAP version 13, as `rstmemd conformance --format tap` and
tests/kernel/real-kernels.sh write it). PATH may be a glob; it must match at
least one file. Every file is read with a strict parser: XML through
xml.etree, TAP line by line, a plan required and matching the test lines.

A stage counts one extra failure when its file is missing, unreadable,
malformed or holds no test at all, and when its runner exited non-zero
although its file shows no failure: a stage that produced no results
failed, it did not pass zero tests.

stderr: one line per stage and one per failed test. stdout: exactly
"N passed, N failed, N skipped". Exit status 0 only when nothing failed.
"""

import glob
import os
import re
import sys
import xml.etree.ElementTree as ET

TRX_NS = "{http://microsoft.com/schemas/VisualStudio/TeamTest/2010}"


class Malformed(Exception):
    pass


class Counts:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.failures = []  # names of failed tests

    def fail(self, name):
        self.failed += 1
        self.failures.append(name)

    @property
    def total(self):
        return self.passed + self.failed + self.skipped


def parse_xml(path):
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as error:
        raise Malformed(f"not well-formed XML: {error}") from None


def read_trx(path):
    """A VSTest TRX file: every UnitTestResult by its outcome, checked against the run's counters."""
    root = parse_xml(path)
    if root.tag != TRX_NS + "TestRun":
        raise Malformed(f"root element is {root.tag}, expected TestRun (a TRX file)")
    counts = Counts()
    for result in root.iter(TRX_NS + "UnitTestResult"):
        outcome = result.get("outcome")
        name = result.get("testName", "?")
        if outcome == "Passed":
            counts.passed += 1
        elif outcome == "NotExecuted":
            counts.skipped += 1
        elif outcome is None:
            raise Malformed(f"UnitTestResult '{name}' has no outcome")
        else:  # Failed, Error, Timeout, Aborted, Inconclusive, ...: not a pass
            counts.fail(f"{name} ({outcome})")
    counters = root.find(f"{TRX_NS}ResultSummary/{TRX_NS}Counters")
    if counters is None:
        raise Malformed("no ResultSummary/Counters: the run did not finish writing it")
    total = int(counters.get("total", "-1"))
    if total != counts.total:
        raise Malformed(f"its counters say {total} tests, its results list {counts.total}")
    # A run that ended early (test host crash, abort) lists what it had:
    # dotnet test's exit status then fails the stage. RunInfos are not
    # counted: xunit reports every failed test there a second time.
    return counts


def read_junit(path):
    """JUnit XML as ctest --output-junit writes it: testcase elements with failure/error/skipped children."""
    root = parse_xml(path)
    if root.tag not in ("testsuite", "testsuites"):
        raise Malformed(f"root element is {root.tag}, expected testsuite or testsuites (JUnit)")
    counts = Counts()
    for case in root.iter("testcase"):
        name = case.get("name", "?")
        if case.find("failure") is not None or case.find("error") is not None or case.get("status") == "fail":
            counts.fail(name)
        elif case.find("skipped") is not None or case.get("status") in ("notrun", "disabled"):
            counts.skipped += 1
        else:
            counts.passed += 1
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    declared = sum(int(suite.get("tests", "0")) for suite in suites)
    if declared != counts.total:
        raise Malformed(f"its testsuite says {declared} tests, it holds {counts.total} testcase elements")
    return counts


TAP_PLAN = re.compile(r"^1\.\.(\d+)(\s*#.*)?$")
TAP_TEST = re.compile(r"^(not ok|ok)\b\s*(\d+)?\s*(?:-\s*)?(.*)$")
TAP_DIRECTIVE = re.compile(r"\s#\s*(SKIP|TODO)\b", re.IGNORECASE)


def read_tap(path):
    """TAP 13: one plan (first or last), test lines numbered 1..N in order, no Bail out!.
    Comments, YAML blocks and subtests (indented) are ignored; any other line is an error."""
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    counts = Counts()
    plan = None
    plan_at = None
    tests = 0
    for number, line in enumerate(lines, 1):
        if number == 1 and line.startswith("TAP version "):
            continue
        if line == "" or line.startswith("#") or line[:1] in (" ", "\t"):
            continue
        if line.startswith("Bail out!"):
            counts.fail(f"bailed out: {line}")
            continue
        match = TAP_PLAN.match(line)
        if match:
            if plan is not None:
                raise Malformed(f"line {number}: a second plan '{line}'")
            plan, plan_at = int(match.group(1)), tests
            continue
        match = TAP_TEST.match(line)
        if not match:
            raise Malformed(f"line {number}: not TAP: '{line}'")
        tests += 1
        if match.group(2) is not None and int(match.group(2)) != tests:
            raise Malformed(f"line {number}: test number {match.group(2)}, expected {tests}")
        description = match.group(3)
        directive = TAP_DIRECTIVE.search(description)
        if directive:
            counts.skipped += 1
        elif match.group(1) == "ok":
            counts.passed += 1
        else:
            counts.fail(description)
    if plan is None:
        raise Malformed("no plan (1..N): the producer did not finish")
    if plan_at not in (0, tests):
        raise Malformed("the plan is neither before the first test nor after the last")
    if plan != tests:
        raise Malformed(f"plan 1..{plan}, but {tests} test lines")
    return counts


READERS = {"trx": read_trx, "junit": read_junit, "tap": read_tap}


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    total = Counts()
    with open(argv[1], encoding="utf-8") as manifest:
        entries = [line.rstrip("\n").split("\t") for line in manifest if line.strip()]
    for entry in entries:
        if len(entry) != 4:
            print(f"results.py: manifest line {entry!r}: expected STAGE, EXIT-STATUS, FORMAT, PATH", file=sys.stderr)
            return 2
        stage, status, kind, pattern = entry
        if kind not in READERS:
            print(f"results.py: stage {stage}: format '{kind}'; expected one of {', '.join(READERS)}", file=sys.stderr)
            return 2
        counts = Counts()
        paths = sorted(glob.glob(pattern))
        if not paths:
            counts.fail(f"{stage}: no result file {os.path.relpath(pattern)}")
        for path in paths:
            try:
                found = READERS[kind](path)
            except (Malformed, OSError, UnicodeDecodeError, ValueError) as error:
                counts.fail(f"{stage}: {os.path.relpath(path)}: {error}")
                continue
            if found.total == 0:
                counts.fail(f"{stage}: {os.path.relpath(path)} holds no test")
            counts.passed += found.passed
            counts.skipped += found.skipped
            counts.failed += found.failed
            counts.failures += found.failures
        if status != "0" and counts.failed == 0:
            counts.fail(f"{stage}: exited with status {status} although its results show no failure")
        where = ", ".join(os.path.relpath(p) for p in paths) or os.path.relpath(pattern)
        print(f"  {stage:<40} {counts.passed:>5} passed, {counts.failed} failed, {counts.skipped} skipped  ({where})", file=sys.stderr)
        for failure in counts.failures:
            print(f"    FAILED: {failure}", file=sys.stderr)
        total.passed += counts.passed
        total.failed += counts.failed
        total.skipped += counts.skipped
    print(f"{total.passed} passed, {total.failed} failed, {total.skipped} skipped")
    return 0 if total.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
