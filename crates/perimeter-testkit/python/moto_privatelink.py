"""moto's server mode with the AWS PrivateLink behaviour moto 5.2.5 lacks, and test controls.

Run it like ``python -m moto.server`` (same arguments, e.g. ``-H 127.0.0.1 -p PORT``): it
patches moto in-process, then calls ``moto.server.main()``. Everything not named here is
moto's own behaviour (Route 53, ELBv2 load balancers, STS, S3, the rest of EC2).

EC2 behaviour modelled (Amazon EC2 API Reference; wire values as AWS sends them: endpoint
states are lower camel case, ``pendingAcceptance``, ``available``..., although the
``State`` enum of botocore's model, and so of aws-sdk-ec2, spells them ``PendingAcceptance``,
``Available``...; ServiceState is ``Pending``, ``Available`` on the wire too):

* CreateVpcEndpoint
  - ``ServiceName`` must name an endpoint service configuration of the region (any account)
    or an AWS service that DescribeVpcEndpointServices lists for the region; otherwise the
    call fails with ``InvalidServiceName`` (HTTP 400), "The Vpc Endpoint Service '<name>'
    does not exist".
  - ``ClientToken`` makes the call idempotent ("Ensuring idempotency", EC2 API): a repeat
    with the same token (same account and region) returns the endpoint the first call made;
    a repeat with another VpcId, ServiceName or VpcEndpointType fails with
    ``IdempotentParameterMismatch``. The token is forgotten once the endpoint is gone.
  - The endpoint starts ``pendingAcceptance`` when its service configuration has
    AcceptanceRequired, else ``pending`` (VpcEndpoint.State). A missing VpcEndpointType is
    ``Gateway``, AWS's default.
* The provisioning clock: every DescribeVpcEndpoints or DescribeVpcEndpointConnections
  answer shows an endpoint's current state, then moves the endpoints it returned one step:
  ``pending`` -> ``available``, ``deleting`` -> ``deleted``, ``deleted`` -> gone (a later
  DescribeVpcEndpoints naming its id fails with ``InvalidVpcEndpointId.NotFound``). So after
  a create, the first describe shows ``pending`` and the second ``available``; after a
  delete, the first shows ``deleting``, the second ``deleted`` and the third no endpoint.
  Other states (``pendingAcceptance``, ``rejected``, ``failed``, ``expired``...) only change
  through the calls below or the ``vpc-endpoint-state`` control.
* DescribeVpcEndpointConnections: the endpoints (of every account of the region) connected
  to the caller's endpoint service configurations, as VpcEndpointConnection (ServiceId,
  VpcEndpointId, VpcEndpointOwner, VpcEndpointState, CreationTimestamp, DnsEntries,
  NetworkLoadBalancerArns, GatewayLoadBalancerArns, IpAddressType, VpcEndpointRegion).
  Filters service-id, vpc-endpoint-id, vpc-endpoint-state, vpc-endpoint-owner,
  vpc-endpoint-region, ip-address-type (exact values); MaxResults/NextToken are ignored.
* AcceptVpcEndpointConnections: an endpoint of the service in ``pendingAcceptance`` goes
  ``pending`` (then ``available`` on the clock). RejectVpcEndpointConnections:
  ``pendingAcceptance``, ``pending`` or ``available`` -> ``rejected`` ("You can reject an
  endpoint connection after it's in the available state", PrivateLink guide). Any other id
  is returned in ``Unsuccessful`` with ``InvalidVpcEndpoint.NotFound`` (not an endpoint of
  this service) or ``InvalidState``; an unknown ServiceId fails the call with
  ``InvalidVpcEndpointServiceId.NotFound``.
* DeleteVpcEndpoints: an existing endpoint goes ``deleting``; a repeat while it is
  ``deleting``/``deleted`` succeeds without effect; an unknown id is returned in
  ``Unsuccessful`` with ``InvalidVpcEndpoint.NotFound`` (a bulk request's partial failure,
  per the EC2 error code list), not raised.
* Endpoint service configurations: CreateVpcEndpointServiceConfiguration honours
  ``ClientToken`` as CreateVpcEndpoint does (mismatch: other load balancers), and the
  configuration's ServiceState starts ``Pending``: the next
  DescribeVpcEndpointServiceConfigurations that returns it shows ``Pending`` and makes it
  ``Available``. DeleteVpcEndpointServiceConfigurations refuses, per service in
  ``Unsuccessful`` with ``ExistingVpcEndpointConnections``, while an endpoint is
  ``pendingAcceptance``, ``pending`` or ``available`` on it (API reference: reject them
  first). DescribeVpcEndpointServicePermissions adds each AllowedPrincipal's PrincipalType
  (Account for ``...:root``, Role, User, Service, All for ``*``) and ServiceId, which
  moto leaves out. (Tags from TagSpecifications are already returned by moto.)

Not modelled: endpoint service permissions do not restrict who may create an endpoint,
PrivateDnsEnabled is not checked against the service's private DNS name, DnsEntries keep
moto's names and random HostedZoneId.

Test controls (not AWS APIs), answered with JSON, under ``/perimeter-moto/``, a path moto
does not use (``{"Error": "..."}`` with HTTP 400/404/405 when a request is wrong):

* ``POST /perimeter-moto/vpc-endpoint-state`` ``{"VpcEndpointId": "vpce-...", "State":
  "expired", "FailureReason": "..."?}`` sets an endpoint's state (any account or region)
  as AWS's own clock or failures would (an expired pendingAcceptance request, a failed
  provisioning; FailureReason is optional). Answers ``{"VpcEndpointId", "State",
  "PreviousState"}``.
* ``POST /perimeter-moto/throttle`` ``{"Action": "CreateVpcEndpoint", "Count": 3, "Code":
  "RequestLimitExceeded"?, "Message": "..."?, "Status": 503?}``: the next Count EC2 or
  Route 53 requests of that operation answer the service's throttling error without reaching
  moto. EC2 (query protocol, Action=...): HTTP 503, ``<Response><Errors><Error><Code>
  RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors>
  <RequestID>..</RequestID></Response>``. Route 53 (REST, the operation found from method
  and path by botocore's model, e.g. ChangeResourceRecordSets = POST .../rrset/): HTTP 400,
  ``<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate
  exceeded</Message></Error><RequestId>..</RequestId></ErrorResponse>``. Count 0 cancels.
  Answers ``{"Action", "Count"}``.
* ``GET /perimeter-moto/requests``: every EC2 and Route 53 request seen since start, in
  order, ``[{"service": "ec2"|"route53", "action": "CreateVpcEndpoint", "t":
  <time.monotonic() of this process, seconds>, "throttled": bool}]``.
"""

import copy
import http
import io
import json
import re
import threading
import time
import uuid
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import botocore.session
import moto.server
from moto.core.responses import ActionResult
from moto.ec2.exceptions import (
    EC2ClientError,
    InvalidFilter,
    InvalidServiceName,
)
from moto.ec2.models import ec2_backends
from moto.ec2.responses import EC2Response

# One lock for every state change made here (moto's server runs requests on threads).
LOCK = threading.RLock()

ENDPOINT_STATES = {
    "pendingAcceptance", "pending", "available", "deleting", "deleted",
    "rejected", "failed", "expired", "partial",
}
# Connections that keep an endpoint service from being deleted.
LIVE_STATES = {"pendingAcceptance", "pending", "available"}


def _backends_of(region):
    """The EC2 backends of `region`, one per account that has used it."""
    return [b for _, r, b in ec2_backends.iter_backends() if r == region]


def _service_configuration(region, service_name):
    for backend in _backends_of(region):
        for config in backend.configurations.values():
            if config.service_name == service_name:
                return config
    return None


def _connections(config, region):
    """The endpoints, of any account of the region, to the service configuration."""
    return [
        ep
        for backend in _backends_of(region)
        for ep in backend.vpc_end_points.values()
        if ep.service_name == config.service_name
    ]


def _tick(endpoint):
    """One step of the provisioning clock, after a describe has shown the endpoint."""
    if endpoint.state == "pending":
        endpoint.state = "available"
    elif endpoint.state == "deleting":
        endpoint.state = "deleted"
    elif endpoint.state == "deleted":
        endpoint.ec2_backend.vpc_end_points.pop(endpoint.id, None)
        endpoint.ec2_backend.tags.pop(endpoint.id, None)


def _unsuccessful(resource_id, code, message):
    return {"ResourceId": resource_id, "Error": {"Code": code, "Message": message}}


def _idempotent_mismatch():
    return EC2ClientError(
        "IdempotentParameterMismatch",
        "Arguments on this idempotent request are inconsistent with arguments used in "
        "previous request(s).",
    )


def _not_found(endpoint_id):
    return _unsuccessful(
        endpoint_id,
        "InvalidVpcEndpoint.NotFound",
        f"The Vpc Endpoint Id '{endpoint_id}' does not exist",
    )


# --- EC2 actions: methods of moto's EC2Response, replaced or added --------------------

_moto = {
    name: getattr(EC2Response, name)
    for name in (
        "create_vpc_endpoint",
        "describe_vpc_endpoints",
        "create_vpc_endpoint_service_configuration",
        "describe_vpc_endpoint_service_configurations",
        "describe_vpc_endpoint_service_permissions",
    )
}


def create_vpc_endpoint(self):
    backend = self.ec2_backend
    token = self._get_param("ClientToken")
    name = self._get_param("ServiceName")
    kind = self._get_param("VpcEndpointType") or "Gateway"
    with LOCK:
        for ep in backend.vpc_end_points.values():
            if token and ep.client_token == token:
                if (ep.vpc_id, ep.service_name, ep.vpc_endpoint_type) != (
                    self._get_param("VpcId"), name, kind,
                ):
                    raise _idempotent_mismatch()
                return ActionResult({"VpcEndpoint": ep, "ClientToken": token})
        config = _service_configuration(self.region, name)
        if config is None and name not in {
            s["ServiceName"]
            for s in backend._collect_default_endpoint_services(
                backend.account_id, self.region
            )
        }:
            raise InvalidServiceName(name)
        result = _moto["create_vpc_endpoint"](self)
        ep = result.result["VpcEndpoint"]
        ep.vpc_endpoint_type = kind
        ep.state = (
            "pendingAcceptance" if config and config.acceptance_required else "pending"
        )
        if token:
            result.result["ClientToken"] = token
        return result


def describe_vpc_endpoints(self):
    with LOCK:
        endpoints = _moto["describe_vpc_endpoints"](self).result["VpcEndpoints"]
        shown = [copy.copy(ep) for ep in endpoints]
        for ep in endpoints:
            _tick(ep)
    return ActionResult({"VpcEndpoints": shown})


def delete_vpc_endpoints(self):
    backend = self.ec2_backend
    unsuccessful = []
    with LOCK:
        for endpoint_id in self._get_param("VpcEndpointIds", []):
            ep = backend.vpc_end_points.get(endpoint_id)
            if ep is None:
                unsuccessful.append(_not_found(endpoint_id))
            elif ep.state not in ("deleting", "deleted"):
                backend.delete_vpc_endpoints([endpoint_id])  # moto frees ENIs, routes
                ep.state = "deleting"
    return ActionResult({"Unsuccessful": unsuccessful})


CONNECTION_FILTERS = {
    "service-id": "ServiceId",
    "vpc-endpoint-id": "VpcEndpointId",
    "vpc-endpoint-owner": "VpcEndpointOwner",
    "vpc-endpoint-state": "VpcEndpointState",
    "vpc-endpoint-region": "VpcEndpointRegion",
    "ip-address-type": "IpAddressType",
}


def describe_vpc_endpoint_connections(self):
    filters = self._filters_from_querystring()
    for name in filters:
        if name not in CONNECTION_FILTERS:
            raise InvalidFilter(name)
    rows = []
    with LOCK:
        for config in self.ec2_backend.configurations.values():
            for ep in _connections(config, self.region):
                row = {
                    "ServiceId": config.id,
                    "VpcEndpointId": ep.id,
                    "VpcEndpointOwner": ep.ec2_backend.account_id,
                    "VpcEndpointState": ep.state,
                    "CreationTimestamp": ep.creation_timestamp,
                    "DnsEntries": ep.dns_entries,
                    "NetworkLoadBalancerArns": config.network_load_balancer_arns,
                    "GatewayLoadBalancerArns": config.gateway_load_balancer_arns,
                    "IpAddressType": "ipv4",
                    "VpcEndpointRegion": self.region,
                }
                if all(
                    row[CONNECTION_FILTERS[name]] in values
                    for name, values in filters.items()
                ):
                    rows.append((row, ep))
        for _, ep in rows:
            _tick(ep)
    return ActionResult({"VpcEndpointConnections": [row for row, _ in rows]})


def _answer_connections(self, allowed_from, new_state):
    service_id = self._get_param("ServiceId")
    unsuccessful = []
    with LOCK:
        # Raises InvalidVpcEndpointServiceId.NotFound for another account's or no service.
        config = self.ec2_backend.describe_vpc_endpoint_service_configurations(
            [service_id]
        )[0]
        endpoints = {ep.id: ep for ep in _connections(config, self.region)}
        for endpoint_id in self._get_param("VpcEndpointIds", []):
            ep = endpoints.get(endpoint_id)
            if ep is None:
                unsuccessful.append(_not_found(endpoint_id))
            elif ep.state not in allowed_from:
                unsuccessful.append(
                    _unsuccessful(
                        endpoint_id,
                        "InvalidState",
                        f"Vpc Endpoint {endpoint_id} is in state {ep.state}",
                    )
                )
            else:
                ep.state = new_state
    return ActionResult({"Unsuccessful": unsuccessful})


def accept_vpc_endpoint_connections(self):
    return _answer_connections(self, {"pendingAcceptance"}, "pending")


def reject_vpc_endpoint_connections(self):
    return _answer_connections(
        self, {"pendingAcceptance", "pending", "available"}, "rejected"
    )


def create_vpc_endpoint_service_configuration(self):
    token = self._get_param("ClientToken")
    lbs = set(self._get_param("NetworkLoadBalancerArns", [])) | set(
        self._get_param("GatewayLoadBalancerArns", [])
    )
    with LOCK:
        for config in self.ec2_backend.configurations.values():
            if token and getattr(config, "client_token", None) == token:
                if lbs != set(config.network_load_balancer_arns) | set(
                    config.gateway_load_balancer_arns
                ):
                    raise _idempotent_mismatch()
                return ActionResult(
                    {"ServiceConfiguration": config, "ClientToken": token}
                )
        result = _moto["create_vpc_endpoint_service_configuration"](self)
        config = result.result["ServiceConfiguration"]
        config.service_state = "Pending"
        config.client_token = token
        if token:
            result.result["ClientToken"] = token
        return result


def describe_vpc_endpoint_service_configurations(self):
    with LOCK:
        configs = _moto["describe_vpc_endpoint_service_configurations"](self).result[
            "ServiceConfigurations"
        ]
        shown = [copy.copy(c) for c in configs]
        for config in configs:
            if config.service_state == "Pending":
                config.service_state = "Available"
    return ActionResult({"ServiceConfigurations": shown})


def delete_vpc_endpoint_service_configurations(self):
    backend = self.ec2_backend
    unsuccessful = []
    with LOCK:
        for service_id in self._get_param("ServiceIds", []):
            config = backend.configurations.get(service_id)
            if config is None:
                unsuccessful.append(
                    _unsuccessful(
                        service_id,
                        "InvalidVpcEndpointService.NotFound",
                        f"The VpcEndpointService Id '{service_id}' does not exist",
                    )
                )
            elif any(ep.state in LIVE_STATES for ep in _connections(config, self.region)):
                unsuccessful.append(
                    _unsuccessful(
                        service_id,
                        "ExistingVpcEndpointConnections",
                        f"Service {service_id} has existing active VPC Endpoint "
                        "connections!",
                    )
                )
            else:
                backend.delete_vpc_endpoint_service_configurations([service_id])
    return ActionResult({"Unsuccessful": unsuccessful})


def _principal_type(principal):
    if principal == "*":
        return "All"
    if principal.endswith(":root") or re.fullmatch(r"\d{12}", principal):
        return "Account"
    if ":role/" in principal:
        return "Role"
    if ":user/" in principal:
        return "User"
    return "Service"


def describe_vpc_endpoint_service_permissions(self):
    result = _moto["describe_vpc_endpoint_service_permissions"](self)
    for allowed in result.result["AllowedPrincipals"]:
        allowed["PrincipalType"] = _principal_type(allowed["Principal"])
        allowed["ServiceId"] = self._get_param("ServiceId")
    return result


for _f in (
    create_vpc_endpoint,
    describe_vpc_endpoints,
    delete_vpc_endpoints,
    describe_vpc_endpoint_connections,
    accept_vpc_endpoint_connections,
    reject_vpc_endpoint_connections,
    create_vpc_endpoint_service_configuration,
    describe_vpc_endpoint_service_configurations,
    delete_vpc_endpoint_service_configurations,
    describe_vpc_endpoint_service_permissions,
):
    setattr(EC2Response, _f.__name__, _f)


# --- Requests: which operation, throttling, the log, the controls ---------------------

EC2_API_VERSION = "2016-11-15"  # the Version parameter of every EC2 query request


def _route53_operations():
    """(method, path regex, operation) from botocore's Route 53 model, most literal first."""
    model = botocore.session.get_session().get_service_model("route53")
    ops = []
    for name in model.operation_names:
        http_ = model.operation_model(name).http
        uri = http_["requestUri"].split("?")[0].rstrip("/")
        pattern = re.sub(
            r"\\\{[^}]+\\\}",
            lambda m: ".+" if m.group(0).endswith("+\\}") else "[^/]+",
            re.escape(uri),
        )
        literal = len(re.sub(r"\{[^}]+\}", "", uri))
        ops.append((literal, http_["method"], re.compile(pattern + "/?"), name))
    ops.sort(key=lambda op: -op[0])
    return [op[1:] for op in ops]


ROUTE53_OPERATIONS = _route53_operations()

THROTTLES = {}  # operation -> {"Count", "Code", "Message", "Status"}
REQUESTS = []  # the log that GET /perimeter-moto/requests answers


def _operation(environ):
    """("ec2"|"route53", operation name) of an EC2 or Route 53 request, else None. Reads a
    form body and puts it back for moto."""
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO", "")
    if path.startswith("/2013-04-01/"):
        for op_method, pattern, name in ROUTE53_OPERATIONS:
            if op_method == method and pattern.fullmatch(path):
                return "route53", name
        return None
    params = parse_qs(environ.get("QUERY_STRING", ""))
    if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        params.update(parse_qs(body.decode("utf-8", "replace")))
    if params.get("Version") == [EC2_API_VERSION] and params.get("Action"):
        return "ec2", params["Action"][0]
    return None


def _throttled(service, action, start_response):
    """The throttling answer for this request, if one is armed for its operation."""
    with LOCK:
        rule = THROTTLES.get(action)
        if not rule or rule["Count"] <= 0:
            return None
        rule["Count"] -= 1
    request_id = str(uuid.uuid4())
    if service == "ec2":
        code = escape(rule.get("Code") or "RequestLimitExceeded")
        message = escape(rule.get("Message") or "Request limit exceeded.")
        status = rule.get("Status") or 503
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
            f"<Code>{code}</Code><Message>{message}</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>"
        )
    else:
        code = escape(rule.get("Code") or "Throttling")
        message = escape(rule.get("Message") or "Rate exceeded")
        status = rule.get("Status") or 400
        body = (
            '<?xml version="1.0"?>\n<ErrorResponse xmlns="https://route53.amazonaws.com/'
            f'doc/2013-04-01/"><Error><Type>Sender</Type><Code>{code}</Code><Message>'
            f"{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
    data = body.encode()
    start_response(
        f"{status} {http.HTTPStatus(status).phrase}",
        [
            ("Content-Type", "text/xml;charset=UTF-8"),
            ("Content-Length", str(len(data))),
            ("x-amzn-RequestId", request_id),
        ],
    )
    return [data]


def _json(start_response, status, value):
    data = json.dumps(value).encode()
    start_response(
        f"{status} {http.HTTPStatus(status).phrase}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]


def _control(environ, start_response):
    name = environ.get("PATH_INFO", "")[len("/perimeter-moto/"):]
    method = environ.get("REQUEST_METHOD")
    if name == "requests":
        if method != "GET":
            return _json(start_response, 405, {"Error": "use GET"})
        with LOCK:
            return _json(start_response, 200, list(REQUESTS))
    if name not in ("vpc-endpoint-state", "throttle"):
        return _json(start_response, 404, {"Error": f"no control {name!r}"})
    if method != "POST":
        return _json(start_response, 405, {"Error": "use POST"})
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length) or b"{}")
        assert isinstance(body, dict)
    except (ValueError, AssertionError):
        return _json(start_response, 400, {"Error": "the body must be a JSON object"})

    if name == "throttle":
        action, count = body.get("Action"), body.get("Count")
        if not isinstance(action, str) or not isinstance(count, int) or count < 0:
            return _json(start_response, 400, {"Error": "need Action and Count >= 0"})
        with LOCK:
            THROTTLES[action] = {
                "Count": count,
                "Code": body.get("Code"),
                "Message": body.get("Message"),
                "Status": body.get("Status"),
            }
        return _json(start_response, 200, {"Action": action, "Count": count})

    endpoint_id, state = body.get("VpcEndpointId"), body.get("State")
    if state not in ENDPOINT_STATES:
        return _json(
            start_response, 400, {"Error": f"State must be one of {sorted(ENDPOINT_STATES)}"}
        )
    with LOCK:
        for _, _, backend in ec2_backends.iter_backends():
            ep = backend.vpc_end_points.get(endpoint_id)
            if ep is not None:
                previous, ep.state = ep.state, state
                if body.get("FailureReason"):
                    ep.failure_reason = body["FailureReason"]
                return _json(
                    start_response,
                    200,
                    {"VpcEndpointId": endpoint_id, "State": state, "PreviousState": previous},
                )
    return _json(start_response, 404, {"Error": f"no endpoint {endpoint_id!r}"})


class PerimeterApplication(moto.server.DomainDispatcherApplication):
    """moto's WSGI application behind the controls, the request log and the throttles."""

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").startswith("/perimeter-moto/"):
            return _control(environ, start_response)
        operation = _operation(environ)
        if operation is not None:
            service, action = operation
            answer = _throttled(service, action, start_response)
            with LOCK:
                REQUESTS.append(
                    {
                        "service": service,
                        "action": action,
                        "t": time.monotonic(),
                        "throttled": answer is not None,
                    }
                )
            if answer is not None:
                return answer
        return super().__call__(environ, start_response)


moto.server.DomainDispatcherApplication = PerimeterApplication

if __name__ == "__main__":
    moto.server.main()
