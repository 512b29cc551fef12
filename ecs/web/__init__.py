"""
The JSON API of the ECA (Klein): C{api} (L{WebAPI} with every route: import
it from there), C{routes} (the operator routes), C{admin} (the expert and
admin routes), C{auth} (who may ask), C{inputs} (what they sent), C{stream}
(one open event stream).
"""
