"""galaxy-morph: build a galaxy-morphology image set from NED and compare classic CNNs on it.

The package never imports streamlit: the dashboard in ``app.py`` and ``pages/`` is a thin layer
over these modules, and so is the command line (``python -m core --help``).
"""

__version__ = "0.1.0"
