"""qsmflow: quantitative susceptibility mapping and R2*/T2* mapping in pure Python."""
__version__ = "0.1.0"
