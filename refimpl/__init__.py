"""refimpl: the executable reference of the multi-threaded Lua scripting subsystem."""
