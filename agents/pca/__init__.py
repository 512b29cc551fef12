"""The partition control agent (`ecs-pca`): the partition sequence and its systems."""
