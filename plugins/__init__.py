"""Built-in plugins: they register through the same pluggy hooks a third party uses."""
