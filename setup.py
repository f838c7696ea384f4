"Install r1lit from settings.ini, the single source of its metadata and dependencies."
from configparser import ConfigParser
from pathlib import Path

import setuptools

cfg = ConfigParser(delimiters=["="])
cfg.read(Path(__file__).parent / "settings.ini")
cfg = cfg["DEFAULT"]

setuptools.setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    description=cfg["description"],
    long_description=(Path(__file__).parent / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    author=cfg["author"],
    author_email=cfg["author_email"],
    keywords=cfg["keywords"].split(),
    classifiers=["Programming Language :: Python :: 3", "Intended Audience :: Science/Research"],
    url=cfg["git_url"],
    project_urls={"Source": cfg["git_url"]},
    python_requires=">=" + cfg["min_python"],
    packages=setuptools.find_packages(include=["r1lit", "r1lit.*"]),
    include_package_data=True,
    install_requires=cfg["requirements"].split(),
    extras_require={"dev": cfg["dev_requirements"].split()},
    entry_points={"console_scripts": cfg["console_scripts"].split(), "nbdev": [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
    zip_safe=False,
)
