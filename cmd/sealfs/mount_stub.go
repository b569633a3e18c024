package main

import "errors"

func cmdMount(a *app, args []string) error   { return errors.New("mount: not available yet") }
func cmdUnmount(a *app, args []string) error { return errors.New("unmount: not available yet") }
