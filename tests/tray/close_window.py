#!/usr/bin/python3
"""Asks an X window to close, as a window manager's close button does (WM_DELETE_WINDOW).

The tray test runs without a window manager, and killing the X client would take the whole app
with it: this is the polite close that the app must answer by destroying only that window.
    close_window.py DISPLAY WINDOW_ID
"""
import sys

from Xlib import X, display, protocol

d = display.Display(sys.argv[1])
window = d.create_resource_object("window", int(sys.argv[2], 0))
protocols = d.intern_atom("WM_PROTOCOLS")
delete = d.intern_atom("WM_DELETE_WINDOW")
event = protocol.event.ClientMessage(
    window=window, client_type=protocols, data=(32, [delete, X.CurrentTime, 0, 0, 0])
)
window.send_event(event, event_mask=X.NoEventMask)
d.flush()
d.close()
