"""Station answers that accept a password change (SetVariables, ChangeConfiguration)."""

from __future__ import annotations

from typing import Any

from ocpp_trio import Version
from ocpp_trio.messages import decode_response, v1_6, v2_0_1, v2_1
from ocpp_trio.protocol.rpc import IncomingCall

V16, V201, V21 = Version.V16, Version.V201, Version.V21


def accepted_set(call: IncomingCall) -> Any:
    return decode_response(
        V201,
        "SetVariables",
        {
            "setVariableResult": [
                {
                    "attributeStatus": "Accepted",
                    "component": item["component"],
                    "variable": item["variable"],
                }
                for item in call.request.to_json()["setVariableData"]
            ]
        },
    )


def accepted_change(_call: IncomingCall) -> Any:
    return v1_6.ChangeConfigurationResponse(status=v1_6.ConfigurationStatus.ACCEPTED)


def password_result(version: Version, status: str) -> Any:
    if version is V16:
        return v1_6.ChangeConfigurationResponse(status=v1_6.ConfigurationStatus(status))
    m = v2_0_1 if version is V201 else v2_1
    return m.SetVariablesResponse(
        set_variable_result=(
            m.SetVariableResultType(
                attribute_status=m.SetVariableStatusEnumType(status),
                component=m.ComponentType(name="SecurityCtrlr"),
                variable=m.VariableType(name="BasicAuthPassword"),
            ),
        )
    )
