# Cython declarations for routing/resp.py (pure-Python mode: the .py is the source).
# Compiled for pack_command (each part of a split request, every feature's upstream
# command) and the parsers; everything else compiles as plain Python.
import cython

@cython.locals(n=cython.Py_ssize_t, headers=tuple)
cpdef pack_command(args)
