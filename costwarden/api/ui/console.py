"""The console's routes in one router (what create_app includes): sign-in, the five pages, the
controls table the live page re-reads, the release / extend forms, two static files."""
from fastapi import APIRouter

from costwarden.api.ui import pages_budgets, pages_controls, pages_ops, pages_spend, session

router = APIRouter()
for _module in (session, pages_budgets, pages_spend, pages_controls, pages_ops):
    router.include_router(_module.router)
