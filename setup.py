"""What setup.cfg cannot say: the built-in plugins and function base install under names of
their own, ``ldengine_plugins`` and ``ldengine_function_base``, so that they cannot collide with
another distribution's top-level ``plugins`` or ``function_base``, while the repository keeps
its top-level folders ``plugins/`` and ``function_base/``."""
from setuptools import find_packages, setup

RENAMED = {"ldengine_plugins": "plugins", "ldengine_function_base": "function_base"}

packages = find_packages(include=["ldengine", "ldengine.*"])
for name, folder in RENAMED.items():
    packages += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=RENAMED)
