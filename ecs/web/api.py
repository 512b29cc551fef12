# -*- test-case-name: tests.test_web -*-
"""
The ECA's JSON API with every route: L{ecs.web.routes} declares L{WebAPI}
and the operator routes, L{ecs.web.admin} adds the expert and admin routes
and L{ecs.web.history} those of runs and the audit trail, L{ecs.web.elog}
those of the electronic logbook, L{ecs.web.sequences} those of run
sequences, to the same
Klein app.  Import L{WebAPI} from here, so that all are loaded.
"""

from ecs.web import admin, elog, history, sequences
from ecs.web.auth import LoginLimiter
from ecs.web.inputs import ApiError
from ecs.web.routes import EventStream, WebAPI

#: The module that added the expert and admin routes (imported for that effect).
ADMIN_ROUTES = admin
#: The module that added the run and audit routes (imported for that effect).
HISTORY_ROUTES = history
#: The module that added the logbook routes (imported for that effect).
LOGBOOK_ROUTES = elog
#: The module that added the run sequence routes (imported for that effect).
SEQUENCE_ROUTES = sequences

__all__ = ["ApiError", "EventStream", "LoginLimiter", "WebAPI"]
