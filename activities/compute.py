"""The app instances: private, IMDSv2 only, encrypted root volume, the Node.js API from user data."""

from __future__ import annotations

from typing import Any

from temporalio import activity

from activities.aws_clients import AwsClients
from activities.consistency import delete_by_id, ids_to_delete, until_visible
from activities.errors import aws_errors
from activities.tags import all_tagged, client_token, earlier, key_filters, tag_specifications
from activities.user_data import render_user_data
from activities.waits import wait_for
from models.naming import APP_GROUP, APP_VERSION_TAG
from models.resources import Deleted, DeleteInput, Instance, InstanceInput, Kind, ResourceKey

LIVE_INSTANCE_STATES = ["pending", "running", "stopping", "stopped"]
DEFAULT_ROOT_DEVICE = "/dev/xvda"


def root_device(image: dict[str, Any]) -> str:
    """Where the image's root volume attaches (Amazon Linux: /dev/xvda)."""
    return image.get("RootDeviceName", DEFAULT_ROOT_DEVICE)


def _with_version(specifications: list[dict[str, Any]], version: str | None) -> dict[str, Any]:
    """The instance's tags, with the app version it runs when the request names one."""
    (instance,) = specifications
    if version is None:
        return instance
    return {**instance, "Tags": [*instance["Tags"], {"Key": APP_VERSION_TAG, "Value": version}]}


class ComputeActivities:
    def __init__(self, aws: AwsClients) -> None:
        self._aws = aws

    def _tagged(self, key: ResourceKey, states: list[str]) -> list[dict[str, Any]]:
        filters = [*key_filters(key), {"Name": "instance-state-name", "Values": states}]
        reservations = self._aws.ec2(key.scope.region).describe_instances(Filters=filters)
        return all_tagged([i for r in reservations["Reservations"] for i in r["Instances"]], key)

    def _find(self, key: ResourceKey, states: list[str]) -> dict[str, Any] | None:
        return next(iter(self._tagged(key, states)), None)

    def _root_device(self, region: str, ami_id: str) -> str:
        images = self._aws.ec2(region).describe_images(ImageIds=[ami_id])["Images"]
        return root_device(images[0]) if images else DEFAULT_ROOT_DEVICE

    @activity.defn
    @aws_errors
    def launch_instance(self, request: InstanceInput) -> Instance:
        key = request.key
        region = key.scope.region
        # The subnet and security group may be seconds old; the token makes the launch safe to repeat.
        instance = earlier(key, lambda: self._find(key, LIVE_INSTANCE_STATES)) or until_visible(
            lambda: self._run(request), f"subnet {request.subnet_id} and group {request.security_group_id}"
        )
        instance_id = instance["InstanceId"]
        wait_for(
            self._aws.ec2(region),
            "instance_running",
            request.waiting,
            f"instance {instance_id} to be running",
            InstanceIds=[instance_id],
        )
        return Instance(instance_id=instance_id, private_ip=instance.get("PrivateIpAddress", ""))

    def _run(self, request: InstanceInput) -> dict[str, Any]:
        key = request.key
        region = key.scope.region
        return self._aws.ec2(region, creates=True).run_instances(
            ImageId=request.ami_id,
            InstanceType=request.instance_type,
            MinCount=1,
            MaxCount=1,
            ClientToken=client_token(key, activity.info().workflow_run_id),
            NetworkInterfaces=[
                {
                    "DeviceIndex": 0,
                    "SubnetId": request.subnet_id,
                    "Groups": [request.security_group_id],
                    "AssociatePublicIpAddress": False,
                }
            ],
            MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"},
            BlockDeviceMappings=[
                {
                    "DeviceName": request.root_device_name or self._root_device(region, request.ami_id),
                    "Ebs": {
                        "VolumeSize": request.root_volume_gib,
                        "VolumeType": "gp3",
                        "Encrypted": True,
                        "DeleteOnTermination": True,
                    },
                }
            ],
            UserData=render_user_data(request.app_port),
            TagSpecifications=[
                _with_version(tag_specifications(key, "instance", group=APP_GROUP), request.app_version),
                *tag_specifications(key, "volume", group=APP_GROUP),
            ],
        )["Instances"][0]

    @activity.defn
    @aws_errors
    def terminate_instance(self, request: DeleteInput) -> Deleted:
        """Wait for `terminated`: until then its security group and subnet are still in use."""
        key = request.key
        ec2 = self._aws.ec2(key.scope.region)
        states = [*LIVE_INSTANCE_STATES, "shutting-down"]
        ids = ids_to_delete(request, lambda: [i["InstanceId"] for i in self._tagged(key, states)])
        for instance_id in ids:
            what = f"instance {instance_id}"
            if delete_by_id(request, lambda i=instance_id: ec2.terminate_instances(InstanceIds=[i]), what):
                wait_for(
                    ec2,
                    "instance_terminated",
                    request.waiting,
                    f"{what} to terminate",
                    InstanceIds=[instance_id],
                )
        return Deleted.of(Kind.INSTANCE, key.name, ids)
