"""The confirmation link every new address is sent: at sign-up, on request, and for a change of email."""

from datetime import timedelta

from sqlmodel import Session

from src.api.v1.models.user import User
from src.core.config import get_settings
from src.services.account_links import EMAIL_CONFIRMATION, create_link
from src.services.mail_outbox import queue_mail


def send_confirmation(session: Session, user: User, *, email: str | None = None) -> None:
    """Mail a link that confirms ``email`` (default: the user's own) for ``user``."""
    email = email or user.email
    hours = get_settings().email_confirmation_hours
    link = create_link(session, user, purpose=EMAIL_CONFIRMATION, email=email, lifetime=timedelta(hours=hours))
    queue_mail(
        session,
        user.id,
        recipient=email,
        subject="Confirm your email address",
        body=(
            f"Hello {user.first_name},\n\nTo confirm {email} as the email of your account ({user.username}), open "
            f"this link within {hours} hours:\n\n{link}\n\nIf it was not you, ignore this message.\n"
        ),
    )
