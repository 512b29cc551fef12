# -*- test-case-name: tests.test_gui -*-
"""
The GUI with every page loaded: import L{GuiPages} and L{site_root} from
here.  The page modules add their routes to L{GuiPages}'s Klein app when they
are imported, so this module imports each of them once.
"""

from ecs.gui import admin, fsmview, pages
from ecs.gui.base import CSP, NAV, GuiPages, Root, site_root

#: The modules whose routes are on L{GuiPages.app} (imported for that effect).
PAGE_MODULES = (pages, admin, fsmview)

__all__ = ["CSP", "NAV", "PAGE_MODULES", "GuiPages", "Root", "site_root"]
