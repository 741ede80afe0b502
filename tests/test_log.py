"""The one message channel: h2aseg loggers, configured once by the CLI (-v / -q), one plain format."""

from __future__ import annotations

import logging

import pytest

from h2aseg.cli import main as cli_main
from h2aseg.log import PACKAGE_LOGGER, configure_logging


@pytest.fixture()
def package_logger():
    logger = logging.getLogger(PACKAGE_LOGGER)
    level, handlers = logger.level, list(logger.handlers)
    yield logger
    logger.setLevel(level)
    logger.handlers[:] = handlers


def test_messages_have_one_plain_format_on_standard_error(package_logger, capsys):
    configure_logging(logging.INFO)
    configure_logging(logging.INFO)  # configuring twice adds no second handler
    log = logging.getLogger("h2aseg.some.module")
    log.info("wrote %d files", 3)
    log.warning("no best.pt")
    log.debug("hidden at INFO")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == ["wrote 3 files", "warning: no best.pt"]


def test_quiet_keeps_warnings_and_verbose_adds_debug(package_logger, capsys):
    log = logging.getLogger("h2aseg.some.module")
    configure_logging(logging.WARNING)
    log.info("progress")
    log.warning("careful")
    configure_logging(logging.DEBUG)
    log.debug("detail")
    assert capsys.readouterr().err.splitlines() == ["warning: careful", "debug: h2aseg.some.module: detail"]


def test_cli_errors_are_one_logged_line_even_when_quiet(package_logger, capsys):
    assert cli_main(["-q", "info", "--model", "no_such_net"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: h2aseg info: unknown model 'no_such_net'") and len(err.splitlines()) == 1
    assert package_logger.level == logging.WARNING
    assert cli_main(["-v", "info"]) == 0
    assert package_logger.level == logging.DEBUG
