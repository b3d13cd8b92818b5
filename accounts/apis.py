"""Account routes of the management API (docs/accounts.md)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiToken, User
from accounts.ratelimit import RateLimited
from accounts.selectors import api_token_get_for_user, api_token_list
from accounts.services import (
    MagicLinkRefused,
    api_token_create,
    api_token_revoke,
    client_ip,
    email_normalize,
    magic_link_confirm,
    magic_link_request,
    session_login,
    visitor_create_with_token,
)


class UserSerializer(serializers.Serializer):
    kind = serializers.SerializerMethodField()
    id = serializers.IntegerField()
    email = serializers.SerializerMethodField()

    def get_kind(self, user: User) -> str:
        return "visitor" if user.is_visitor else "user"

    def get_email(self, user: User) -> str | None:
        return user.email or None


class ApiTokenSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "revoked_at"]


class LinkRefused(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "link_invalid"


def _throttled(exc: RateLimited) -> exceptions.Throttled:
    # DRF's handler turns `wait` into the Retry-After header; the message says the wait already
    # (in minutes), so not DRF's "Expected available in N seconds." too.
    throttled = exceptions.Throttled(wait=exc.retry_after)
    throttled.detail = exceptions.ErrorDetail(exc.message, code=throttled.default_code)
    return throttled


def _visitor(user: Any) -> User | None:
    return user if isinstance(user, User) and user.is_visitor else None


def _csrf_verified(request: Request) -> bool:
    """Whether the request carries Django's CSRF proof (cookie and X-CSRFToken, right Origin).

    DRF checks CSRF only for requests its session authentication let in; an anonymous request
    goes unchecked. Logging an anonymous browser in is a change to that browser, though: a form
    on another site posting the attacker's own link would sign the victim's browser in as the
    attacker (login CSRF), and what the victim does next lands in the attacker's account.
    """
    try:
        SessionAuthentication().enforce_csrf(request)
    except exceptions.PermissionDenied:
        return False
    return True


class VisitorCreateApi(APIView):
    """POST /api/visitors/: an anonymous visitor and a token for it (the curl quick start)."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()
        user = UserSerializer()

    @extend_schema(request=None, responses={201: OutputSerializer})
    def post(self, request: Request) -> Response:
        try:
            visitor, token = visitor_create_with_token(ip=client_ip(request._request))
        except RateLimited as exc:
            raise _throttled(exc) from None
        data = self.OutputSerializer({"token": token, "user": visitor}).data
        return Response(data, status=status.HTTP_201_CREATED)


class MeApi(APIView):
    """GET /api/me/: who the credentials belong to."""

    @extend_schema(responses={200: UserSerializer})
    def get(self, request: Request) -> Response:
        return Response(UserSerializer(request.user).data)


class TokenListCreateApi(APIView):
    """GET, POST /api/tokens/: the caller's live tokens; a new one, shown once."""

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100)

    class CreatedSerializer(ApiTokenSerializer):
        token = serializers.CharField()

        class Meta(ApiTokenSerializer.Meta):
            fields = [*ApiTokenSerializer.Meta.fields, "token"]

    @extend_schema(responses={200: ApiTokenSerializer(many=True)})
    def get(self, request: Request) -> Response:
        tokens = api_token_list(user=request.user)  # type: ignore[arg-type]
        return Response(ApiTokenSerializer(tokens, many=True).data)

    @extend_schema(request=InputSerializer, responses={201: CreatedSerializer})
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        api_token, token = api_token_create(
            user=request.user,  # type: ignore[arg-type]
            name=serializer.validated_data["name"],
        )
        data = ApiTokenSerializer(api_token).data
        data["token"] = token
        return Response(data, status=status.HTTP_201_CREATED)


class TokenDetailApi(APIView):
    """DELETE /api/tokens/<id>/: revoke; another user's token answers 404."""

    @extend_schema(responses={204: None})
    def delete(self, request: Request, id: int) -> Response:
        api_token = api_token_get_for_user(user=request.user, token_id=id)  # type: ignore[arg-type]
        api_token_revoke(api_token=api_token)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MagicLinkRequestApi(APIView):
    """POST /api/auth/magic-link/: email a sign-in link. The same answer for every address."""

    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        email = serializers.CharField(max_length=254)

        def validate_email(self, value: str) -> str:
            try:
                return email_normalize(value)
            except DjangoValidationError:
                raise serializers.ValidationError("Enter a valid email address.") from None

    @extend_schema(
        request=InputSerializer,
        responses={202: inline_serializer("MagicLinkSent", {"message": serializers.CharField()})},
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            magic_link_request(
                email=serializer.validated_data["email"],
                ip=client_ip(request._request),
                visitor=_visitor(request.user),
                user_agent=request.headers.get("User-Agent", ""),
            )
        except RateLimited as exc:
            raise _throttled(exc) from None
        message = "If that address can receive email, a sign-in link is on its way."
        return Response({"message": message}, status=status.HTTP_202_ACCEPTED)


class MagicLinkConfirmApi(APIView):
    """POST /api/auth/magic-link/confirm/: spend a link, sign in, maybe merge the caller's visitor.

    The caller's visitor (session or token) is merged when it asked for the link, or with
    `merge_visitor: true` (accounts.services.magic_link_confirm_merges). The session is logged
    in only when the request proves it comes from our own pages (_csrf_verified).
    """

    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        token = serializers.CharField(max_length=128)
        api_token_name = serializers.CharField(max_length=100, required=False)
        merge_visitor = serializers.BooleanField(required=False, default=False)

    class OutputSerializer(serializers.Serializer):
        user = UserSerializer()
        session = serializers.BooleanField()
        api_token = serializers.CharField(required=False)

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            account = magic_link_confirm(
                token=serializer.validated_data["token"],
                ip=client_ip(request._request),
                visitor=_visitor(request.user),
                merge_visitor=serializer.validated_data["merge_visitor"],
            )
        except MagicLinkRefused as exc:
            raise LinkRefused(detail=exc.message, code=exc.code) from None
        except RateLimited as exc:
            raise _throttled(exc) from None
        session = _csrf_verified(request)
        if session:
            session_login(request._request, account)
        data: dict[str, Any] = {"user": UserSerializer(account).data, "session": session}
        if name := serializer.validated_data.get("api_token_name"):
            _, data["api_token"] = api_token_create(user=account, name=name)
        return Response(data)
