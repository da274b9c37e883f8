# Cython declarations for routing/resp.py (pure-Python mode: the .py is the source).
# Compiled for pack_command (each part of a split request, every feature's upstream
# command) and the parsers; everything else compiles as plain Python.
import cython

@cython.locals(n=cython.Py_ssize_t, headers=tuple)
cpdef pack_command(args)

# The fast request scan: positions, counts and lengths are C integers, bounded by the
# buffer and by the digit limits the scan enforces (5 for a count, 10 for a length).
@cython.locals(end=cython.Py_ssize_t, pos=cython.Py_ssize_t, start=cython.Py_ssize_t,
               count=cython.Py_ssize_t, size=cython.Py_ssize_t, after=cython.Py_ssize_t,
               args=list)
cpdef Py_ssize_t scan_requests(bytes buf, list out, Py_ssize_t max_bulk,
                               Py_ssize_t max_count) except -1

@cython.locals(value=cython.Py_ssize_t, first=cython.Py_ssize_t, digits=cython.Py_ssize_t,
               c=cython.uchar)
cdef (Py_ssize_t, Py_ssize_t) _plain_number(bytes buf, Py_ssize_t pos, Py_ssize_t end,
                                            Py_ssize_t most)
