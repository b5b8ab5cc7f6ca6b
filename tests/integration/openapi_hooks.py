"""schemathesis hooks of tests/integration/openapi.rs (loaded through SCHEMATHESIS_HOOKS).

A capture's outcome depends on the page as much as on the request: a generated URL names a
host that does not resolve here (502 navigation_failed, by design) and a generated `timeout`
of 100 ms ends in 504 timeout, by design too. So that any 5xx the run sees is a fault of the
daemon, every capture whose `url` is a string goes to a page of the test's fixture site
(SHOTFARM_TEST_PAGES, space-separated), and a valid `timeout` below SHOTFARM_TEST_TIMEOUT_MS
is raised to it. Everything else schemathesis generates is sent as generated,
including invalid URLs' types and out-of-range timeouts (the negative cases).
"""

import itertools
import os

import schemathesis

PAGES = itertools.cycle(os.environ["SHOTFARM_TEST_PAGES"].split())
TIMEOUT_MS = int(os.environ["SHOTFARM_TEST_TIMEOUT_MS"])


def _integer_like(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and value.strip().isdigit()


def _fix(options):
    if not isinstance(options, dict):
        return
    if isinstance(options.get("url"), str):
        options["url"] = next(PAGES)
    timeout = options.get("timeout")
    if _integer_like(timeout) and 100 <= int(timeout) < TIMEOUT_MS:
        options["timeout"] = TIMEOUT_MS


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.path != "/api/v1/screenshot":
        return
    _fix(case.query)
    _fix(case.body)
