"""Package list for setuptools (all other metadata is in pyproject.toml).

``configs/`` ships inside the wheel as the package ``genprior_configs`` (its YAML files as package data),
so presets resolve outside a checkout; see :func:`lcm.configs.config_dir`.
"""

from setuptools import find_packages, setup

code = find_packages(include=["lcm*", "inversion*", "datamodules*", "callbacks*"])
setup(
    packages=[*code, "genprior_configs"],
    package_dir={"genprior_configs": "configs"},
    package_data={"genprior_configs": ["**/*.yaml"]},
)
