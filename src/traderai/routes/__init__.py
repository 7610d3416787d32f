"""The HTTP routes: Powertools routers that read a request's parameters, take their adapters from
`traderai.wiring` and call a service. The HTTP handlers include them; the services never see the wiring.
"""
