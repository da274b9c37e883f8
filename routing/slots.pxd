# Cython declarations for routing/slots.py (pure-Python mode: the .py is the source).
# `key` stays untyped: any object the pure module takes (bytes, bytearray) works alike.
import cython

@cython.locals(start=cython.Py_ssize_t, end=cython.Py_ssize_t)
cpdef key_hash_slot(key)

cpdef list key_hash_slots(keys)
