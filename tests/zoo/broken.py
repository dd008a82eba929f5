"""A class file that raises when imported."""
raise RuntimeError("this model file is broken on purpose")
