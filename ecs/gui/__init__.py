"""
The ECA's web GUI: HTML page shells from C{templates/} served beside the
JSON API.  L{ecs.gui.base} holds the page plumbing (L{ecs.gui.base.GuiPages},
the site root, the security headers); the page modules (C{pages}, C{admin},
C{fsmview}) add their routes to its Klein app; L{ecs.gui.site} loads them all
and is what the ECA imports.
"""
