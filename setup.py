"""Packaging for smsd.

The Twisted plugin lives in ``twisted/plugins/`` without an ``__init__.py``
(shipping one would shadow Twisted's own package); setuptools copies the
module as package data of the ``twisted.plugins`` namespace.
"""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="smsd",
    version="0.1.0",
    description="SMS gateway for an organisation: mail, HTTP, SNPP, XMPP and SIP to SMS",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=[
        *find_packages(include=["smsd", "smsd.*", "protocols", "protocols.*"]),
        "twisted.plugins",
    ],
    package_data={"twisted.plugins": ["smsd_plugin.py"], "smsd": ["default.toml"]},
    install_requires=[
        "twisted[tls]>=24.7",
        "attrs>=23.1",
        "pyserial>=3.5",
        "phonenumbers>=8.13",
        "anyascii>=0.3",
        "httptools>=0.6",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-cov>=5",
            "hypothesis>=6.100",
            "aiosmtpd>=1.4",
            "python-gsmmodem-new>=0.13",
            "gsm0338>=1.1",
            "smspdudecoder>=2.2",
            "bitstring<5",
            "smpp.pdu3>=0.6",
            "smpp34>=1.5",
            "slixmpp>=1.8",
            "ruff>=0.6",
        ],
    },
    entry_points={"console_scripts": ["smsd-admin = smsd.admin:main"]},
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Topic :: Communications :: Telephony",
    ],
)
