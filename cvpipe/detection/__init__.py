"""Detection: conversion of boxes to the YOLO and TF Object Detection formats."""
