# Only the lupa API refimpl uses; see refimpl/lua.py.
