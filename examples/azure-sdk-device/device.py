"""A Device API v2 device built on Microsoft's Azure IoT device SDK for
Python (azure-iot-device), for testing with dmconf.

It connects with a connection string whose GatewayHostName points at the
broker dmconf started (and trusts dmconf's CA), exactly as a device in the
field connects to IoT Hub. dmconf's hooks reach it through files in the
system's temporary folder: the `perform` and `offline` hooks write a
request to `<device>.<hook>.json`, which the device carries out, and wait
for its answer in `<device>.<hook>.answer.json`; the device writes every
cloud-to-device message it receives, decoded by the SDK, to
`<device>.received.json`, which the `received` hook prints. The device
removes its files when it stops.

Environment (set by dmconf): DMCONF_MQTT_URL, DMCONF_MQTT_CA,
DMCONF_DEVICE_ID, and the limits DMCONF_D2C_BYTES and DMCONF_HEADER_BYTES.
"""

import base64
import gzip
import json
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
import zlib
from urllib.parse import urlparse

from azure.iot.device import IoTHubDeviceClient, Message

device_id = os.environ["DMCONF_DEVICE_ID"]
spool = os.path.join(tempfile.gettempdir(), device_id)
broker = urlparse(os.environ["DMCONF_MQTT_URL"])
ca = open(os.environ["DMCONF_MQTT_CA"]).read()
# IoT Hub's device-to-cloud limit, and the Device API's limit on header
# properties (binary kilobytes unless the profile says otherwise).
d2c_limit = int(os.environ.get("DMCONF_D2C_BYTES") or 256 * 1024)
header_limit = int(os.environ.get("DMCONF_HEADER_BYTES") or 32 * 1024)
key = base64.b64encode(b"any key: the local hub does not check it").decode()
connection_string = (
    f"HostName=dmconf-hub.azure-devices.net;DeviceId={device_id};"
    f"SharedAccessKey={key};GatewayHostName={broker.hostname}"
)
# The SDK always connects to port 8883: the profile asks dmconf to
# publish its TLS listener there. It connects with CleanSession 0, so the
# broker keeps its subscription, and what arrives for it, while it is away.
client = IoTHubDeviceClient.create_from_connection_string(
    connection_string, server_verification_cert=ca
)
received = []

CONTENT_TYPE = "application/json"
DEFAULT_MODEL = "abb.ability.device"
# The application property that `fillHeaders` adds.
PAD_HEADER = "pad"


def on_message(message):
    body = message.data
    if message.content_encoding == "gzip":
        body = gzip.decompress(body)
    elif message.content_encoding == "deflate":
        body = zlib.decompress(body)
    try:
        body = json.loads(body)
    except ValueError:
        body = None
    # The system properties the SDK read from the topic, by their names there.
    system = {
        "$.mid": message.message_id,
        "$.cid": message.correlation_id,
        "$.uid": message.user_id,
        "$.ct": message.content_type,
        "$.ce": message.content_encoding,
        "$.exp": message.expiry_time_utc,
    }
    properties = {k: v for k, v in system.items() if v is not None}
    received.append({"headers": message.custom_properties, "properties": properties, "body": body})
    with open(f"{spool}.received.json.tmp", "w") as f:
        json.dump({"count": len(received), **received[-1]}, f)
    os.rename(f"{spool}.received.json.tmp", f"{spool}.received.json")


def text(value):
    """A property value as it goes on the wire: text (JSON for numbers and
    booleans, so true is "true")."""
    return value if isinstance(value, str) else json.dumps(value)


def given(params, *names):
    """The parameters among `names` that the request gives, as properties."""
    return {n: text(params[n]) for n in names if params.get(n) is not None}


def own_model():
    """The device's own object model, what model.create sends by default."""
    return {
        "model": DEFAULT_MODEL,
        "type": "abb.ability.device.dmconf@1",
        "properties": {"serialNumber": {"value": device_id}},
    }


# The headers each action takes from its parameters (the reference's
# table of actions); the others go in the body.
ACTION_HEADERS = {
    "identity.create": ("parent",),
    "identity.delete": ("parent",),
    "model.update": ("objectId", "model"),
    "model.patch": ("objectId", "model"),
    "model.delete": ("objectId", "model"),
    "owner.remove": ("owner",),
    "reference.create": ("objectId", "model"),
    "reference.delete": ("objectId", "model", "name"),
    "type.create": ("model",),
    "type.delete": ("typeId", "model"),
    "type.query": ("model",),
    "extension.create": ("objectId", "model"),
    "extension.get": ("objectId", "model", "extensionVersion"),
}


def action_parts(action, params):
    """The headers of `action` and its body (None for none), built from its
    parameters; a `body` among the parameters is sent as given."""
    headers = given(params, *ACTION_HEADERS.get(action, ()))
    body = params["body"] if "body" in params else action_body(action, params)
    return headers, body


def action_body(action, params):
    """The body `action` needs, built from its parameters as the Device
    API's per-action reference says; None for an action without one."""
    model = params.get("model") or DEFAULT_MODEL
    if action == "model.create":
        return own_model()
    if action == "model.query":
        return {"query": params["query"]}
    if action in ("identity.create", "identity.delete"):
        return {"identity": params["identity"]}
    if action == "model.update":
        # A full replacement of the model.
        return {**own_model(), "objectId": params["objectId"], "model": model}
    if action == "model.patch":
        # A patch carries the version of the model it applies to.
        return {"objectId": params["objectId"], "model": model,
                "version": int(params["version"]),
                "properties": own_model()["properties"]}
    if action == "owner.remove":
        # Exactly one model per request: the platform has no transactions.
        return [{"objectId": params["objectId"], "model": model}]
    if action == "reference.create":
        return [{"name": params["name"],
                 "to": {"objectId": params["to"], "model": DEFAULT_MODEL}}]
    if action == "reference.delete":
        # Optionally, the model the reference points to.
        if params.get("to") is None:
            return None
        return {"to": {"objectId": params["to"], "model": DEFAULT_MODEL}}
    if action == "type.create":
        return {"model": model, "typeId": params["typeId"], "version": "1.0.0",
                "description": "A type of dmconf's example device",
                "properties": {"serialNumber": {"dataType": "string"}}}
    if action == "type.query":
        return None if params.get("filter") is None else {"filter": params["filter"]}
    if action == "extension.create":
        return {"properties": {"location": {"dataType": "string"}}}
    if action in ("model.delete", "type.delete", "extension.get"):
        return None
    if action == "batch.execute":
        return [batch_entry(entry) for entry in params["entries"]]
    raise ValueError(f"`{action}` is not an action this device knows")


def batch_entry(entry):
    """One entry of a batch: its action, its headers as sibling keys (never
    elevated with e_), its own correlationId and context, and its body."""
    headers, body = action_parts(entry["action"], entry)
    item = {k: entry[k] for k in ("id", "dependsOn") if k in entry}
    item.update({"action": entry["action"], **headers,
                 **given(entry, "correlationId", "context")})
    if body is not None:
        item["body"] = body
    return item


def header_bytes(headers):
    """Header properties as the Device API's limit counts them: names and
    values of the application properties, decoded, in UTF-8 bytes."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in headers.items())


def perform(request):
    """Sends a request as the hook describes it; refuses one over the
    device-to-cloud or the header limit, as a device must."""
    action = request["action"]
    try:
        action_headers, body = action_parts(action, request)
    except KeyError as e:
        return {"sent": False, "reason": f"{action} needs `{e.args[0]}`"}
    except ValueError as e:
        return {"sent": False, "reason": str(e)}
    headers = {"msgType": "action", "action": action, "version": "2",
               "correlationId": request.get("correlationId") or str(uuid.uuid4()),
               **given(request, "ack", "context", "target"), **action_headers}
    if action == "extension.get" and headers.get("ack") not in ("all", "positive"):
        # extension.get is answered in its ack: anything else is refused.
        headers["ack"] = "all"
    headers.update({k: text(v) for k, v in (request.get("headers") or {}).items()})

    encoding = request.get("encoding") or "utf-8"
    if encoding not in ("utf-8", "gzip", "deflate"):
        return {"sent": False, "reason": f"unknown content encoding `{encoding}`"}
    fill_headers = request.get("fillHeaders")
    if fill_headers:
        # One more property brings the headers to exactly that many bytes.
        pad = int(fill_headers) - header_bytes(headers) - len(PAD_HEADER)
        if pad < 0:
            return {"sent": False, "reason": f"the headers are over {fill_headers} bytes already"}
        headers[PAD_HEADER] = "x" * pad
    data = "" if body is None else json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    fill = request.get("fill")
    if fill:
        # Size as IoT Hub counts it: body + system property values
        # ($.ct, $.ce) + application property names and values.
        if encoding != "utf-8" or '"$fill"' not in data:
            return {"sent": False, "reason": 'fill pads the string "$fill" of an uncompressed body'}
        base = (len(data.replace('"$fill"', '""', 1).encode())
                + len(CONTENT_TYPE) + len(encoding) + header_bytes(headers))
        if int(fill) < base:
            return {"sent": False, "reason": f"the message is over {fill} bytes already"}
        data = data.replace('"$fill"', '"' + "x" * (int(fill) - base) + '"', 1)
    payload = data.encode()
    if encoding == "gzip":
        payload = gzip.compress(payload)
    elif encoding == "deflate":
        payload = zlib.compress(payload)

    size = len(payload) + len(CONTENT_TYPE) + len(encoding) + header_bytes(headers)
    if size > d2c_limit:
        return {"sent": False, "reason": f"{size} bytes is over the device-to-cloud limit of {d2c_limit}"}
    if header_bytes(headers) > header_limit:
        return {"sent": False, "reason": f"{header_bytes(headers)} bytes of header properties "
                                         f"is over the limit of {header_limit}"}
    message = Message(payload, content_encoding=encoding, content_type=CONTENT_TYPE)
    message.custom_properties = headers
    try:
        client.send_message(message)
    except ValueError as e:
        # The SDK's own size check (an estimate larger than IoT Hub's
        # count) refuses messages near the limit.
        return {"sent": False, "reason": str(e)}
    return {"sent": True, "correlationId": headers["correlationId"]}


def come_back():
    client.connect()
    print(f"device {device_id} back online", flush=True)


def offline(request):
    """Goes away for `seconds`: disconnects now and connects again later.
    The session stays on the broker (CleanSession 0), so what is sent to
    the device meanwhile reaches it when it is back."""
    client.disconnect()
    timer = threading.Timer(float(request["seconds"]), come_back)
    timer.daemon = True
    timer.start()
    return {"offline": True}


hooks = {"perform": perform, "offline": offline}


def stop(*_):
    client.shutdown()
    for suffix in ["received.json"] + [f"{hook}.{end}" for hook in hooks
                                       for end in ("json", "answer.json")]:
        try:
            os.remove(f"{spool}.{suffix}")
        except FileNotFoundError:
            pass
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
client.on_message_received = on_message
client.connect()
time.sleep(0.5)  # let the SDK finish subscribing to cloud-to-device messages
print(f"device {device_id} connected", flush=True)
while True:
    for hook, act in hooks.items():
        inbox = f"{spool}.{hook}.json"
        if os.path.exists(inbox):
            with open(inbox) as f:
                request = json.load(f)
            os.remove(inbox)
            answer = act(request)
            with open(f"{spool}.{hook}.answer.json.tmp", "w") as f:
                json.dump(answer, f)
            os.rename(f"{spool}.{hook}.answer.json.tmp", f"{spool}.{hook}.answer.json")
    time.sleep(0.05)
