"""``twistd smsd``: the SMS gateway as a twistd plugin.

smsd is imported only in makeService: twistd imports every plugin module
when it scans for plugins, before it installs the reactor the user chose.
"""

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer


class Options(usage.Options):
    optParameters = [
        ["config", "c", None, "TOML configuration file (default: the embedded default setup)"],
        ["data-dir", "d", None, "data directory (overrides [smsd] data_dir)"],
    ]


@implementer(IServiceMaker, IPlugin)
class SmsdServiceMaker:
    tapname = "smsd"
    description = "SMS gateway: mail, HTTP, SNPP, XMPP and SIP to SMS and back"
    options = Options

    def makeService(self, options):
        from smsd.service import service_from_options

        return service_from_options(options["config"], options["data-dir"])


serviceMaker = SmsdServiceMaker()
