"""The JSON API of the ECA (Klein): routes (`api`), expert and admin routes (`admin`), the event stream (`stream`)."""
