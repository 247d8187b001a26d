"""The C ABI driver: ``python -m refimpl.driver.capi --lib ./libport.so`` serves a port's
shared library, which exports the functions of ``conformance/capi/refimpl_port.h``, over the
driver protocol (spec/driver-protocol.md, section "The C ABI").

The protocol server is the reference driver's own (``refimpl.driver.server``); this package
only supplies its components: the port's queue, pool, message and engine functions through
ctypes (``components``), over allocators whose memory is C memory tracked by the suite's ledger
(``memory``), as the header declares them (``abi``).
"""
