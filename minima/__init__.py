"""minima: which minima do optimizers find, how sharp are they, does sharpness predict generalization?"""

__version__ = "0.1.0"
