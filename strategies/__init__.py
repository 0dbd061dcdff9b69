"""Built-in length policies and proposers."""
