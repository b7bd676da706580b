"""The version, in a module of its own so that core modules never import the package's face."""

__version__ = "0.1.0"
