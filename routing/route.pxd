# Cython declarations for routing/route.py (pure-Python mode: the .py is the source).
# Only what measurably pays: C integers for positions and counts that are bounded by
# construction (buffer sizes, argument counts), exact builtin types where the module itself
# makes the object. Lengths read from the wire stay Python ints, so that a reply claiming a
# 2**70-byte bulk behaves as in the pure module (no OverflowError). Declared `bytes`/`list`
# arguments reject other types, which no caller passes (tests/unit/routing/test_equivalence.py).
import cython

cdef class Routed:
    cdef public object requests, filled, layout, plan, node, raw
    cdef public Py_ssize_t start, stop, count, slot
    cdef public dict nodes, pieces

@cython.locals(routed=Routed, direct=dict, headers=tuple, nodes=dict, pieces_of=dict,
               layout=list, pieces=list, part=cython.Py_ssize_t, index=cython.Py_ssize_t,
               count=cython.Py_ssize_t, argc=cython.Py_ssize_t, slot=cython.Py_ssize_t)
cpdef route_batch(requests, Py_ssize_t start, router, owners, any_node, read_node=*)

@cython.locals(first=cython.Py_ssize_t, offset=cython.Py_ssize_t)
cdef _add_split(Routed routed, split, owners, dict nodes, dict pieces_of)

cpdef Py_ssize_t count_names(list requests, dict counts) except -1

@cython.locals(layout=list, out=list, first=cython.Py_ssize_t)
cpdef assemble(routed, list raws, resp3)

@cython.locals(lengths=dict, pos=cython.Py_ssize_t, size=cython.Py_ssize_t,
               newline=cython.Py_ssize_t, kind=cython.int)
cpdef tuple frame_replies(bytes buf, list ends)

# At most 18 digits: the value fits a long long.
@cython.locals(end=cython.Py_ssize_t, value=cython.longlong)
cdef (long long, Py_ssize_t) _digits_line(bytes buf, Py_ssize_t pos, Py_ssize_t size)

@cython.locals(newline=cython.Py_ssize_t)
cpdef _reply_end(bytes buf, Py_ssize_t pos, Py_ssize_t size)

@cython.locals(position=cython.Py_ssize_t, arity=cython.Py_ssize_t, argc=cython.Py_ssize_t)
cdef Py_ssize_t _direct_slot(args, dict direct) except? -3

cdef _direct_node(Py_ssize_t slot, args, reads, owners, any_node, read_node)

@cython.locals(count=cython.Py_ssize_t, wanted=cython.Py_ssize_t, available=cython.Py_ssize_t,
               end=cython.Py_ssize_t)
cpdef Py_ssize_t fill_parts(bytes buf, list ends, Py_ssize_t first, Py_ssize_t pos, list raws,
                            list indices, Py_ssize_t done) except -1
