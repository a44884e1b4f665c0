"""pytest runs trial TestCases; importing trial first lets pytest honour trial's
``todo`` and ``skip`` attributes (reported as XFAIL / skipped)."""

import twisted.trial.unittest  # noqa: F401
